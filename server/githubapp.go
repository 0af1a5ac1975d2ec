package server

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

	"github.com/credport/credport/store"
)

// AppKeyStore is what a Store also offers when its integrations can hold GitHub Apps: the app's
// private key, opened on demand. Without it every APP import answers that no app is configured.
type AppKeyStore interface {
	AppPrivateKey(ctx context.Context, in store.Integration) (*rsa.PrivateKey, error)
}

// GitHub's API version and media type, as its REST documentation asks clients to send them.
const (
	githubAPIVersion = "2022-11-28"
	githubMediaType  = "application/vnd.github+json"
	// githubMaxAnswer bounds what is read of an answer; a token answer is well under 64 KiB.
	githubMaxAnswer = 1 << 20
)

// githubApp mints installation access tokens of GitHub Apps.
type githubApp struct {
	client  *http.Client
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger
}

// newProviderClient is the default client for provider calls. It follows no redirect: a redirect
// means a misconfigured API base URL, and following it could carry the app's JWT elsewhere.
func newProviderClient() *http.Client {
	return &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// installationToken is a minted token as an import stores it.
type installationToken struct {
	// credentials is {type: "APP", access_token, expires_at, raw}, raw being GitHub's answer.
	credentials json.RawMessage
	expiresAt   *time.Time
}

// mint asks GitHub for an access token of installation installationID of the integration's app,
// authenticating with a JWT signed by key. GitHub's refusals are 400 invalid_body errors that say
// why; an unreachable, slow or failing GitHub is 502 provider_unavailable.
func (g *githubApp) mint(ctx context.Context, in store.Integration, key *rsa.PrivateKey, installationID string) (installationToken, error) {
	now := g.now()
	assertion, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer:    in.AppID,
		IssuedAt:  jwt.NewNumericDate(now.Add(-60 * time.Second)), // GitHub's clock may run behind ours
		ExpiresAt: jwt.NewNumericDate(now.Add(9 * time.Minute)),   // GitHub refuses more than 10 minutes
	}).SignedString(key)
	if err != nil {
		return installationToken{}, fmt.Errorf("sign GitHub App JWT: %w", err)
	}
	endpoint := in.APIBaseURL + "/app/installations/" + url.PathEscape(installationID) + "/access_tokens"
	host := apiHost(in.APIBaseURL)

	callCtx, cancel := g.callContext(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(callCtx, http.MethodPost, endpoint, nil)
	if err != nil {
		return installationToken{}, fmt.Errorf("GitHub App %q: build request: %w", in.UniqueKey, err)
	}
	req.Header.Set("Authorization", "Bearer "+assertion)
	req.Header.Set("Accept", githubMediaType)
	req.Header.Set("X-GitHub-Api-Version", githubAPIVersion)
	req.Header.Set("User-Agent", "credport")
	res, err := g.client.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); errors.Is(ctxErr, context.Canceled) {
			return installationToken{}, fmt.Errorf("GitHub App %q: the client went away: %w", in.UniqueKey, ctxErr)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return installationToken{}, providerUnavailable(in, host, err,
				fmt.Sprintf("GitHub did not answer within %s; retry later", g.timeout))
		}
		return installationToken{}, providerUnavailable(in, host, err,
			"GitHub could not be reached to mint the installation token; retry later")
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(res.Body, githubMaxAnswer))
	if err != nil {
		return installationToken{}, providerUnavailable(in, host, err,
			"GitHub's answer was cut short; retry later")
	}
	status := fmt.Sprintf("%d %s", res.StatusCode, http.StatusText(res.StatusCode))
	switch {
	case res.StatusCode == http.StatusOK || res.StatusCode == http.StatusCreated:
		tok, err := installationCredentials(answer)
		if err != nil {
			return installationToken{}, providerUnavailable(in, host, err,
				"GitHub's answer to the installation token request could not be read")
		}
		return tok, nil
	case res.StatusCode == http.StatusUnauthorized:
		g.refused(ctx, in, host, res.StatusCode)
		return installationToken{}, invalidBody(
			fmt.Sprintf("GitHub refused the JWT of GitHub App %s (%s): the integration's private key or app id is wrong", in.AppID, status),
			detail("app_key_rejected", "GitHub does not accept the integration's private key for this app", []string{"credentials", "app_id"}))
	case res.StatusCode == http.StatusNotFound:
		g.refused(ctx, in, host, res.StatusCode)
		return installationToken{}, invalidBody(
			fmt.Sprintf("GitHub App %s has no installation %s (%s)", in.AppID, installationID, status),
			detail("installation_not_found", "No such installation of the integration's GitHub App", []string{"credentials", "installation_id"}))
	case res.StatusCode == http.StatusForbidden && res.Header.Get("X-RateLimit-Remaining") == "0",
		res.StatusCode == http.StatusTooManyRequests, res.StatusCode == http.StatusRequestTimeout:
		return installationToken{}, providerUnavailable(in, host, errors.New(status),
			fmt.Sprintf("GitHub is rate limiting the installation token requests (%s); retry later", status))
	case res.StatusCode >= 400 && res.StatusCode < 500:
		g.refused(ctx, in, host, res.StatusCode)
		message := fmt.Sprintf("GitHub refused to mint a token for installation %s of GitHub App %s (%s)", installationID, in.AppID, status)
		if m := githubMessage(answer); m != "" {
			message += ": " + m
		}
		return installationToken{}, invalidBody(message,
			detail("installation_refused", "GitHub refused to mint a token for this installation", []string{"credentials", "installation_id"}))
	default:
		return installationToken{}, providerUnavailable(in, host, errors.New(status),
			fmt.Sprintf("GitHub failed to mint the installation token (%s); retry later", status))
	}
}

// callContext bounds a call to GitHub by the provider timeout rather than by the request's
// database deadline, and still ends it when the client goes away.
func (g *githubApp) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.timeout)
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

// providerUnavailable is the 502 for a GitHub that could not mint a token. The cause is kept for
// the error log: it names the host, never the request URL or a header.
func providerUnavailable(in store.Integration, host string, cause error, message string) error {
	var urlErr *url.Error
	if errors.As(cause, &urlErr) {
		cause = urlErr.Err
	}
	return fmt.Errorf("GitHub App %q on %s: %w: %w", in.UniqueKey, host, cause,
		newError(http.StatusBadGateway, "provider_unavailable", message))
}

// refused logs that GitHub turned down a token request, which the caller is told about with a 400.
func (g *githubApp) refused(ctx context.Context, in store.Integration, host string, status int) {
	g.log.WarnContext(ctx, "GitHub refused an installation token", "integration", in.UniqueKey,
		"github_host", host, "github_status", status)
}

// installationCredentials turns GitHub's answer into the credentials an import stores.
func installationCredentials(answer []byte) (installationToken, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(answer, &raw); err != nil {
		return installationToken{}, fmt.Errorf("answer is not a JSON object: %w", err)
	}
	var fields struct {
		Token     string  `json:"token"`
		ExpiresAt *string `json:"expires_at"`
	}
	if err := json.Unmarshal(answer, &fields); err != nil {
		return installationToken{}, fmt.Errorf("answer: %w", err)
	}
	if fields.Token == "" {
		return installationToken{}, errors.New("answer has no token")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, answer); err != nil {
		return installationToken{}, fmt.Errorf("answer: %w", err)
	}
	creds := map[string]any{"type": "APP", "access_token": fields.Token, "raw": json.RawMessage(compact.Bytes())}
	var tok installationToken
	if fields.ExpiresAt != nil {
		t, err := time.Parse(time.RFC3339, *fields.ExpiresAt)
		if err != nil {
			return installationToken{}, errors.New("answer has an expires_at that is not an RFC 3339 date-time")
		}
		t = t.UTC()
		tok.expiresAt = &t
		creds["expires_at"] = t.Format(time.RFC3339Nano)
	}
	stored, err := json.Marshal(creds)
	if err != nil {
		return installationToken{}, err
	}
	tok.credentials = stored
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

// appConnectionConfig is the connection_config of an APP connection: the request's, if it sent
// one, with app_id and installation_id set over it.
func appConnectionConfig(sent *json.RawMessage, appID, installationID string) (json.RawMessage, error) {
	config := map[string]json.RawMessage{}
	if sent != nil {
		if err := json.Unmarshal(*sent, &config); err != nil {
			return nil, fmt.Errorf("connection_config: %w", err)
		}
	}
	for k, v := range map[string]string{"app_id": appID, "installation_id": installationID} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		config[k] = b
	}
	return json.Marshal(config)
}
