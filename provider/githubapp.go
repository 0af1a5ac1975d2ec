package provider

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
)

// GitHub's API version and media type, as its REST documentation asks clients to send them.
const (
	githubAPIVersion = "2022-11-28"
	githubMediaType  = "application/vnd.github+json"
	// githubMaxAnswer bounds what is read of an answer; a token answer is well under 64 KiB.
	githubMaxAnswer = 1 << 20
)

// GitHubApp is a GitHub App of an integration, as minting its tokens needs it.
type GitHubApp struct {
	// Integration is the integration's unique key, for errors and logs.
	Integration string
	// AppID is the app's id; APIBaseURL the GitHub API it lives on.
	AppID, APIBaseURL string
}

// Refusals of an installation token request, as RefusedError.Code names them.
const (
	// RefusalAppKeyRejected: GitHub does not accept the JWT: the private key or app id is wrong.
	RefusalAppKeyRejected = "app_key_rejected"
	// RefusalInstallationNotFound: the app has no such installation.
	RefusalInstallationNotFound = "installation_not_found"
	// RefusalInstallationRefused: GitHub refused to mint a token for the installation.
	RefusalInstallationRefused = "installation_refused"
)

// Minter mints installation access tokens of GitHub Apps.
type Minter struct {
	HTTP    *http.Client
	Timeout time.Duration
	Now     func() time.Time
	Log     *slog.Logger
}

// NewHTTPClient is the default client for provider calls. It follows no redirect: a redirect
// means a misconfigured URL, and following it could carry credentials elsewhere.
func NewHTTPClient() *http.Client {
	return &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// InstallationToken is a minted token as an import stores it.
type InstallationToken struct {
	// Credentials is {type: "APP", access_token, expires_at, raw}, raw being GitHub's answer.
	Credentials json.RawMessage
	ExpiresAt   *time.Time
}

// Mint asks GitHub for an access token of installation installationID of app in,
// authenticating with a JWT signed by key. GitHub's refusals are a *RefusedError whose Code is
// one of the Refusal constants and whose Description says why; an unreachable, slow or failing
// GitHub is an *UnavailableError whose Reason says so.
func (g *Minter) Mint(ctx context.Context, in GitHubApp, key *rsa.PrivateKey, installationID string) (InstallationToken, error) {
	now := g.Now()
	assertion, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer:    in.AppID,
		IssuedAt:  jwt.NewNumericDate(now.Add(-60 * time.Second)), // GitHub's clock may run behind ours
		ExpiresAt: jwt.NewNumericDate(now.Add(9 * time.Minute)),   // GitHub refuses more than 10 minutes
	}).SignedString(key)
	if err != nil {
		return InstallationToken{}, fmt.Errorf("sign GitHub App JWT: %w", err)
	}
	endpoint := in.APIBaseURL + "/app/installations/" + url.PathEscape(installationID) + "/access_tokens"
	host := apiHost(in.APIBaseURL)

	callCtx, cancel := g.callContext(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(callCtx, http.MethodPost, endpoint, nil)
	if err != nil {
		return InstallationToken{}, fmt.Errorf("GitHub App %q: build request: %w", in.Integration, err)
	}
	req.Header.Set("Authorization", "Bearer "+assertion)
	req.Header.Set("Accept", githubMediaType)
	req.Header.Set("X-GitHub-Api-Version", githubAPIVersion)
	req.Header.Set("User-Agent", "credport")
	res, err := g.HTTP.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); errors.Is(ctxErr, context.Canceled) {
			return InstallationToken{}, fmt.Errorf("GitHub App %q: the client went away: %w", in.Integration, ctxErr)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return InstallationToken{}, providerUnavailable(in, host, err,
				fmt.Sprintf("GitHub did not answer within %s; retry later", g.Timeout))
		}
		return InstallationToken{}, providerUnavailable(in, host, err,
			"GitHub could not be reached to mint the installation token; retry later")
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(res.Body, githubMaxAnswer))
	if err != nil {
		return InstallationToken{}, providerUnavailable(in, host, err,
			"GitHub's answer was cut short; retry later")
	}
	status := fmt.Sprintf("%d %s", res.StatusCode, http.StatusText(res.StatusCode))
	switch {
	case res.StatusCode == http.StatusOK || res.StatusCode == http.StatusCreated:
		tok, err := installationCredentials(answer)
		if err != nil {
			return InstallationToken{}, providerUnavailable(in, host, err,
				"GitHub's answer to the installation token request could not be read")
		}
		return tok, nil
	case res.StatusCode == http.StatusUnauthorized:
		g.refused(ctx, in, host, res.StatusCode)
		return InstallationToken{}, &RefusedError{Status: res.StatusCode, Code: RefusalAppKeyRejected,
			Description: fmt.Sprintf("GitHub refused the JWT of GitHub App %s (%s): the integration's private key or app id is wrong", in.AppID, status)}
	case res.StatusCode == http.StatusNotFound:
		g.refused(ctx, in, host, res.StatusCode)
		return InstallationToken{}, &RefusedError{Status: res.StatusCode, Code: RefusalInstallationNotFound,
			Description: fmt.Sprintf("GitHub App %s has no installation %s (%s)", in.AppID, installationID, status)}
	case res.StatusCode == http.StatusForbidden && res.Header.Get("X-RateLimit-Remaining") == "0",
		res.StatusCode == http.StatusTooManyRequests, res.StatusCode == http.StatusRequestTimeout:
		return InstallationToken{}, providerUnavailable(in, host, errors.New(status),
			fmt.Sprintf("GitHub is rate limiting the installation token requests (%s); retry later", status))
	case res.StatusCode >= 400 && res.StatusCode < 500:
		g.refused(ctx, in, host, res.StatusCode)
		message := fmt.Sprintf("GitHub refused to mint a token for installation %s of GitHub App %s (%s)", installationID, in.AppID, status)
		if m := githubMessage(answer); m != "" {
			message += ": " + m
		}
		return InstallationToken{}, &RefusedError{Status: res.StatusCode, Code: RefusalInstallationRefused, Description: message}
	default:
		return InstallationToken{}, providerUnavailable(in, host, errors.New(status),
			fmt.Sprintf("GitHub failed to mint the installation token (%s); retry later", status))
	}
}

// callContext bounds a call to GitHub by the provider timeout rather than by the request's
// database deadline, and still ends it when the client goes away.
func (g *Minter) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.Timeout)
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			cancel()
		}
	})
	return callCtx, func() {
		stop()
		cancel()
	}
}

// providerUnavailable is the error of a GitHub that could not mint a token: message says so to
// the caller. The cause is kept for the error log: it names the host, never the request URL or a
// header.
func providerUnavailable(in GitHubApp, host string, cause error, message string) error {
	var urlErr *url.Error
	if errors.As(cause, &urlErr) {
		cause = urlErr.Err
	}
	return fmt.Errorf("GitHub App %q on %s: %w", in.Integration, host, &UnavailableError{Reason: message, Err: cause})
}

// refused logs that GitHub turned down a token request, which the caller is told about.
func (g *Minter) refused(ctx context.Context, in GitHubApp, host string, status int) {
	g.Log.WarnContext(ctx, "GitHub refused an installation token", "integration", in.Integration,
		"github_host", host, "github_status", status)
}

// installationCredentials turns GitHub's answer into the credentials an import stores.
func installationCredentials(answer []byte) (InstallationToken, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(answer, &raw); err != nil {
		return InstallationToken{}, fmt.Errorf("answer is not a JSON object: %w", err)
	}
	var fields struct {
		Token     string  `json:"token"`
		ExpiresAt *string `json:"expires_at"`
	}
	if err := json.Unmarshal(answer, &fields); err != nil {
		return InstallationToken{}, fmt.Errorf("answer: %w", err)
	}
	if fields.Token == "" {
		return InstallationToken{}, errors.New("answer has no token")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, answer); err != nil {
		return InstallationToken{}, fmt.Errorf("answer: %w", err)
	}
	creds := map[string]any{"type": "APP", "access_token": fields.Token, "raw": json.RawMessage(compact.Bytes())}
	var tok InstallationToken
	if fields.ExpiresAt != nil {
		t, err := time.Parse(time.RFC3339, *fields.ExpiresAt)
		if err != nil {
			return InstallationToken{}, errors.New("answer has an expires_at that is not an RFC 3339 date-time")
		}
		t = t.UTC()
		tok.ExpiresAt = &t
		creds["expires_at"] = t.Format(time.RFC3339Nano)
	}
	stored, err := json.Marshal(creds)
	if err != nil {
		return InstallationToken{}, err
	}
	tok.Credentials = stored
	return tok, nil
}

// githubMessage is the "message" of a GitHub error answer, made safe to repeat: printable
// characters only, at most 200 of them.
func githubMessage(answer []byte) string {
	var body struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(answer, &body) != nil {
		return ""
	}
	m := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, strings.TrimSpace(body.Message))
	if r := []rune(m); len(r) > 200 {
		m = string(r[:200]) + "…"
	}
	return m
}

// apiHost is the host of an API base URL, for logs.
func apiHost(base string) string {
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		return u.Host
	}
	return "?"
}
