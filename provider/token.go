package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// maxAnswer bounds the token endpoint's answer that is kept as raw.
const maxAnswer = 1 << 20

// Endpoint is where and how a client asks for tokens.
type Endpoint struct {
	TokenURL     string
	TokenAuth    string // AuthBody or AuthBasic
	ClientID     string
	ClientSecret string
	Scopes       []string
}

// Token is a provider's answer to a token request.
type Token struct {
	AccessToken string
	// RefreshToken is the one the provider issued, or the one the request used when the
	// provider did not rotate it.
	RefreshToken string
	// ExpiresAt is nil when the provider gave no expiry.
	ExpiresAt *time.Time
	// Raw is the whole answer as a JSON object.
	Raw json.RawMessage
}

// RefusedError is a provider turning the request down (an OAuth error or another 4xx): the
// grant will not work until something changes.
type RefusedError struct {
	Status      int
	Code        string
	Description string
}

func (e *RefusedError) Error() string {
	msg := fmt.Sprintf("the provider refused the token request (HTTP %d)", e.Status)
	if e.Code != "" {
		msg += ": " + e.Code
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	return msg
}

// UnavailableError is a provider that could not answer: unreachable, too slow, failing (5xx,
// 408, 429) or answering with something that is not a token. Trying again later may work.
type UnavailableError struct {
	Reason string
	Err    error
}

func (e *UnavailableError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// Client asks providers for tokens.
type Client struct {
	// HTTP makes the calls; it should follow no redirect, which would carry the client
	// credentials elsewhere.
	HTTP *http.Client
	// Timeout bounds one call.
	Timeout time.Duration
	// Now is the clock that turns expires_in into an expiry.
	Now func() time.Time
}

// Refresh exchanges a refresh token for new tokens (grant_type=refresh_token).
func (c *Client) Refresh(ctx context.Context, e Endpoint, refreshToken string) (Token, error) {
	conf := &oauth2.Config{
		ClientID:     e.ClientID,
		ClientSecret: e.ClientSecret,
		Endpoint:     oauth2.Endpoint{TokenURL: e.TokenURL, AuthStyle: authStyle(e.TokenAuth)},
	}
	return c.call(ctx, func(ctx context.Context) (*oauth2.Token, error) {
		return conf.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	})
}

// ClientCredentials asks for a new token with the client's own credentials
// (grant_type=client_credentials).
func (c *Client) ClientCredentials(ctx context.Context, e Endpoint) (Token, error) {
	conf := &clientcredentials.Config{
		ClientID:     e.ClientID,
		ClientSecret: e.ClientSecret,
		TokenURL:     e.TokenURL,
		Scopes:       e.Scopes,
		AuthStyle:    authStyle(e.TokenAuth),
	}
	return c.call(ctx, conf.Token)
}

func authStyle(tokenAuth string) oauth2.AuthStyle {
	if tokenAuth == AuthBasic {
		return oauth2.AuthStyleInHeader
	}
	return oauth2.AuthStyleInParams
}

// call runs one token request through an HTTP client that keeps the answer, which oauth2 parses
// but does not hand back whole, and sorts its failures into refusals and unavailability.
func (c *Client) call(ctx context.Context, request func(context.Context) (*oauth2.Token, error)) (Token, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	rec := &recorder{base: c.HTTP.Transport}
	if rec.base == nil {
		rec.base = http.DefaultTransport
	}
	hc := *c.HTTP
	hc.Transport = rec
	tok, err := request(context.WithValue(ctx, oauth2.HTTPClient, &hc))
	if err != nil {
		return Token{}, c.classify(ctx, err)
	}
	raw, err := answerObject(rec.body, rec.contentType)
	if err != nil {
		return Token{}, &UnavailableError{Reason: "the provider's answer is not a token", Err: err}
	}
	out := Token{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, Raw: raw}
	out.ExpiresAt, err = expiry(tok.ExpiresIn, raw, c.Now())
	if err != nil {
		return Token{}, &UnavailableError{Reason: "the provider's answer is not a token", Err: err}
	}
	return out, nil
}

func (c *Client) classify(ctx context.Context, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := re.Response.StatusCode
		if status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout {
			return &UnavailableError{Reason: fmt.Sprintf("the provider answered HTTP %d", status), Err: errors.New(http.StatusText(status))}
		}
		return &RefusedError{Status: status, Code: re.ErrorCode, Description: re.ErrorDescription}
	}
	if ctx.Err() != nil {
		return &UnavailableError{Reason: fmt.Sprintf("the provider did not answer within %s", c.Timeout), Err: ctx.Err()}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// The URL may carry nothing secret, but the operation adds nothing either.
		return &UnavailableError{Reason: "the provider could not be reached", Err: ue.Err}
	}
	// oauth2 could not read a successful answer: not JSON, or without an access token.
	return &UnavailableError{Reason: "the provider's answer is not a token", Err: err}
}

// expiry is the token's expiry: now + expires_in, or the answer's expires_at (RFC 3339 or Unix
// seconds) when it gives that instead; nil when it gives neither. expires_in is read from the
// answer when oauth2 did not keep it: it keeps none for form-encoded answers nor for the client
// credentials grant.
func expiry(expiresIn int64, raw json.RawMessage, now time.Time) (*time.Time, error) {
	var answer struct {
		ExpiresIn json.RawMessage `json:"expires_in"`
		ExpiresAt json.RawMessage `json:"expires_at"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		return nil, nil
	}
	if expiresIn <= 0 && len(answer.ExpiresIn) > 0 {
		// A number, or a string of one (form-encoded answers, and providers that quote it).
		expiresIn, _ = strconv.ParseInt(strings.Trim(string(answer.ExpiresIn), `"`), 10, 64)
	}
	if expiresIn > 0 {
		t := now.Add(time.Duration(expiresIn) * time.Second).UTC()
		return &t, nil
	}
	if len(answer.ExpiresAt) == 0 || string(answer.ExpiresAt) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(answer.ExpiresAt, &s) == nil {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, fmt.Errorf("expires_at %q: %w", s, err)
		}
		t = t.UTC()
		return &t, nil
	}
	var secs int64
	if err := json.Unmarshal(answer.ExpiresAt, &secs); err != nil {
		return nil, fmt.Errorf("expires_at: %w", err)
	}
	t := time.Unix(secs, 0).UTC()
	return &t, nil
}

// answerObject is the token endpoint's answer as a JSON object; form-encoded answers (GitHub's
// default) become an object of strings.
func answerObject(body []byte, contentType string) (json.RawMessage, error) {
	media, _, _ := mime.ParseMediaType(contentType)
	if media == "application/x-www-form-urlencoded" || media == "text/plain" {
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, err
		}
		obj := make(map[string]string, len(vals))
		for k := range vals {
			obj[k] = vals.Get(k)
		}
		return json.Marshal(obj)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, err
	}
	return json.RawMessage(body), nil
}

// recorder keeps the last answer it carried, up to maxAnswer bytes.
type recorder struct {
	base        http.RoundTripper
	body        []byte
	contentType string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	r.body, r.contentType = body, res.Header.Get("Content-Type")
	res.Body = io.NopCloser(bytes.NewReader(body))
	return res, nil
}

// Scopes splits a space-separated scope list.
func Scopes(s string) []string { return strings.Fields(s) }
