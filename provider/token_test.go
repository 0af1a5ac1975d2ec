package provider_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/provider"
	"github.com/credport/credport/provider/providertest"
)

// now is the clock of the clients under test, far from the real one so that an expiry computed
// with time.Now shows.
var now = time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC)

func newClient(timeout time.Duration) *provider.Client {
	return &provider.Client{HTTP: &http.Client{}, Timeout: timeout, Now: func() time.Time { return now }}
}

// answering is a token endpoint that always gives the same answer, for answers the fake
// provider does not give.
func answering(t *testing.T, status int, contentType, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/token"
}

// hanging is a token endpoint that reads the request and never answers. (The fake provider's
// Hang mode leaves the body unread, so its server cannot see the client give up and its Close
// waits for ever.)
func hanging(t *testing.T) string {
	t.Helper()
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })
	return srv.URL + "/token"
}

// unreachable is a URL where nothing listens.
func unreachable(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "http://" + addr + "/token"
}

func at(t time.Time) *time.Time { return &t }

// tokenCase is one token request and what must come of it.
type tokenCase struct {
	name string
	// basic makes the fake provider and the endpoint use HTTP Basic; secret replaces the client
	// secret the fake provider expects.
	basic  bool
	secret string
	// setup tunes the fake provider; tokenURL, when it returns one, replaces its token URL.
	setup   func(t *testing.T, p *providertest.Provider) (tokenURL string)
	timeout time.Duration
	// endpointSecret is the secret the client sends; "" sends the right one.
	endpointSecret string

	wantExpiresAt *time.Time
	wantNoExpiry  bool
	// wantRotated: a new refresh token replaced the one used, which the provider no longer takes.
	wantRotated bool
	// wantRefreshToken is the refresh token a fixed answer gives.
	wantRefreshToken string
	wantRaw          map[string]any // members Raw must have
	wantRefused      *provider.RefusedError
	// wantUnavailable is a substring of the UnavailableError.
	wantUnavailable string
}

// check checks the outcome of a token request made with the refresh token rt ("" for a client
// credentials grant) and the secrets that must not show in an error.
func (tc tokenCase) check(t *testing.T, p *providertest.Provider, rt string, tok provider.Token, err error, took time.Duration) {
	t.Helper()
	if err != nil {
		for _, secret := range []string{p.ClientSecret, rt} {
			if secret != "" && strings.Contains(err.Error(), secret) {
				t.Errorf("the error %q shows a secret", err)
			}
		}
	}
	switch {
	case tc.wantRefused != nil:
		var refused *provider.RefusedError
		if !errors.As(err, &refused) {
			t.Fatalf("err = %v (%T), want a *RefusedError", err, err)
		}
		if *refused != *tc.wantRefused {
			t.Errorf("refusal %+v, want %+v", *refused, *tc.wantRefused)
		}
		return
	case tc.wantUnavailable != "":
		var unavailable *provider.UnavailableError
		if !errors.As(err, &unavailable) {
			t.Fatalf("err = %v (%T), want an *UnavailableError", err, err)
		}
		if !strings.Contains(err.Error(), tc.wantUnavailable) {
			t.Errorf("err = %q, want it to contain %q", err, tc.wantUnavailable)
		}
		if tc.timeout > 0 && took > tc.timeout+2*time.Second {
			t.Errorf("gave up after %v, want about the timeout %v", took, tc.timeout)
		}
		return
	case err != nil:
		t.Fatalf("err = %v", err)
	}
	if tok.AccessToken == "" {
		t.Error("no access token")
	}
	if rt != "" {
		switch {
		case tc.wantRefreshToken != "":
			if tok.RefreshToken != tc.wantRefreshToken {
				t.Errorf("refresh token %q, want the answer's, %q", tok.RefreshToken, tc.wantRefreshToken)
			}
		case tc.wantRotated && (tok.RefreshToken == rt || tok.RefreshToken == ""):
			t.Errorf("refresh token %q, want a new one in place of %q", tok.RefreshToken, rt)
		case tc.wantRotated && (p.Valid(rt) || !p.Valid(tok.RefreshToken)):
			t.Errorf("after rotation the provider takes the old refresh token: %v, the new one: %v", p.Valid(rt), p.Valid(tok.RefreshToken))
		case !tc.wantRotated && tok.RefreshToken != rt:
			t.Errorf("refresh token %q, want the one kept, %q", tok.RefreshToken, rt)
		}
	} else if tok.RefreshToken != "" {
		t.Errorf("refresh token %q from a client credentials grant", tok.RefreshToken)
	}
	switch {
	case tc.wantNoExpiry && tok.ExpiresAt != nil:
		t.Errorf("ExpiresAt = %v, want nil", tok.ExpiresAt)
	case tc.wantExpiresAt != nil && (tok.ExpiresAt == nil || !tok.ExpiresAt.Equal(*tc.wantExpiresAt)):
		t.Errorf("ExpiresAt = %v, want %v", tok.ExpiresAt, tc.wantExpiresAt)
	}
	var raw map[string]any
	if err := json.Unmarshal(tok.Raw, &raw); err != nil {
		t.Fatalf("Raw %s is not a JSON object: %v", tok.Raw, err)
	}
	if raw["access_token"] != tok.AccessToken {
		t.Errorf("Raw %s lacks the access token", tok.Raw)
	}
	for k, want := range tc.wantRaw {
		if got := raw[k]; got != want {
			t.Errorf("Raw[%s] = %#v, want %#v (Raw %s)", k, got, want, tok.Raw)
		}
	}
}

func (tc tokenCase) provider(t *testing.T) (*providertest.Provider, provider.Endpoint, *provider.Client) {
	t.Helper()
	secret := tc.secret
	if secret == "" {
		secret = "client-secret-value"
	}
	p := providertest.New(t, "client-id", secret)
	p.Basic = tc.basic
	endpoint := provider.Endpoint{TokenURL: p.TokenURL(), TokenAuth: provider.AuthBody, ClientID: p.ClientID, ClientSecret: p.ClientSecret}
	if tc.basic {
		endpoint.TokenAuth = provider.AuthBasic
	}
	if tc.endpointSecret != "" {
		endpoint.ClientSecret = tc.endpointSecret
	}
	if tc.setup != nil {
		if u := tc.setup(t, p); u != "" {
			endpoint.TokenURL = u
		}
	}
	timeout := tc.timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	return p, endpoint, newClient(timeout)
}

// commonCases behave alike for both grants.
func commonCases() []tokenCase {
	hour := at(now.Add(time.Hour))
	return []tokenCase{
		{name: "client secret in the body", wantExpiresAt: hour, wantRaw: map[string]any{"token_type": "bearer", "expires_in": 3600.0}},
		{name: "HTTP Basic", basic: true, wantExpiresAt: hour},
		{name: "HTTP Basic, secret with reserved characters", basic: true, secret: "s e+c/r:e%t&=", wantExpiresAt: hour},
		{name: "expires_in by the client's clock",
			setup:         func(_ *testing.T, p *providertest.Provider) string { p.SetExpiresIn(90); return "" },
			wantExpiresAt: at(now.Add(90 * time.Second))},
		{name: "no expiry",
			setup:        func(_ *testing.T, p *providertest.Provider) string { p.SetExpiresIn(0); return "" },
			wantNoExpiry: true},
		{name: "expires_at as RFC 3339",
			setup: func(t *testing.T, _ *providertest.Provider) string {
				return answering(t, 200, "application/json", `{"access_token":"at-1","refresh_token":"RT","expires_at":"2031-02-03T06:00:00+01:00"}`)
			},
			wantExpiresAt: at(time.Date(2031, 2, 3, 5, 0, 0, 0, time.UTC)), wantRefreshToken: "RT"},
		{name: "expires_at as Unix seconds",
			setup: func(t *testing.T, _ *providertest.Provider) string {
				return answering(t, 200, "application/json", `{"access_token":"at-1","refresh_token":"RT","expires_at":1957000000}`)
			},
			wantExpiresAt: at(time.Unix(1957000000, 0)), wantRefreshToken: "RT"},
		{name: "expires_in wins over expires_at",
			setup: func(t *testing.T, _ *providertest.Provider) string {
				return answering(t, 200, "application/json", `{"access_token":"at-1","refresh_token":"RT","expires_in":60,"expires_at":1957000000}`)
			},
			wantExpiresAt: at(now.Add(time.Minute)), wantRefreshToken: "RT"},
		{name: "expires_in quoted",
			setup: func(t *testing.T, _ *providertest.Provider) string {
				return answering(t, 200, "application/json", `{"access_token":"at-1","refresh_token":"RT","expires_in":"120"}`)
			},
			wantExpiresAt: at(now.Add(2 * time.Minute)), wantRefreshToken: "RT"},
		{name: "form-encoded answer",
			setup:         func(_ *testing.T, p *providertest.Provider) string { p.SetForm(true); return "" },
			wantExpiresAt: hour, wantRaw: map[string]any{"token_type": "bearer", "expires_in": "3600"}},
		{name: "form-encoded answer without expiry",
			setup: func(_ *testing.T, p *providertest.Provider) string {
				p.SetForm(true)
				p.SetExpiresIn(0)
				return ""
			},
			wantNoExpiry: true},
		{name: "wrong client secret", endpointSecret: "not-the-secret",
			wantRefused: &provider.RefusedError{Status: 401, Code: "invalid_client", Description: "client authentication failed"}},
		{name: "invalid_grant",
			setup:       func(_ *testing.T, p *providertest.Provider) string { p.SetMode(providertest.InvalidGrant); return "" },
			wantRefused: &provider.RefusedError{Status: 400, Code: "invalid_grant", Description: "The refresh token is invalid or revoked"}},
		{name: "error answered with 200, as GitHub does",
			setup: func(t *testing.T, _ *providertest.Provider) string {
				return answering(t, 200, "application/x-www-form-urlencoded", "error=bad_refresh_token&error_description=The+refresh+token+passed+is+incorrect+or+expired.")
			},
			wantRefused: &provider.RefusedError{Status: 200, Code: "bad_refresh_token", Description: "The refresh token passed is incorrect or expired."}},
		{name: "403 without an OAuth error",
			setup: func(t *testing.T, _ *providertest.Provider) string {
				return answering(t, 403, "text/html", "<h1>Forbidden</h1>")
			},
			wantRefused: &provider.RefusedError{Status: 403}},
		{name: "500",
			setup:           func(_ *testing.T, p *providertest.Provider) string { p.SetMode(providertest.Fail); return "" },
			wantUnavailable: "HTTP 500"},
		{name: "502 with an OAuth error",
			setup: func(t *testing.T, _ *providertest.Provider) string {
				return answering(t, 502, "application/json", `{"error":"temporarily_unavailable"}`)
			},
			wantUnavailable: "HTTP 502"},
		{name: "429",
			setup: func(t *testing.T, _ *providertest.Provider) string {
				return answering(t, 429, "application/json", `{"error":"rate_limited"}`)
			},
			wantUnavailable: "HTTP 429"},
		{name: "hangs", timeout: 300 * time.Millisecond,
			setup:           func(t *testing.T, _ *providertest.Provider) string { return hanging(t) },
			wantUnavailable: "did not answer within 300ms"},
		{name: "unreachable",
			setup:           func(t *testing.T, _ *providertest.Provider) string { return unreachable(t) },
			wantUnavailable: "could not be reached"},
		{name: "answer not JSON",
			setup: func(t *testing.T, _ *providertest.Provider) string {
				return answering(t, 200, "text/html", "<html>hello</html>")
			},
			wantUnavailable: "not a token"},
		{name: "answer a JSON array",
			setup: func(t *testing.T, _ *providertest.Provider) string {
				return answering(t, 200, "application/json", `["access_token"]`)
			},
			wantUnavailable: "not a token"},
		{name: "answer without an access token",
			setup: func(t *testing.T, _ *providertest.Provider) string {
				return answering(t, 200, "application/json", `{"token_type":"bearer"}`)
			},
			wantUnavailable: "not a token"},
		{name: "bad expires_at",
			setup: func(t *testing.T, _ *providertest.Provider) string {
				return answering(t, 200, "application/json", `{"access_token":"at-1","expires_at":"tomorrow"}`)
			},
			wantUnavailable: "not a token"},
	}
}

func TestClientRefresh(t *testing.T) {
	t.Parallel()
	cases := append(commonCases(),
		tokenCase{name: "rotation",
			setup:       func(_ *testing.T, p *providertest.Provider) string { p.SetRotate(true); return "" },
			wantRotated: true, wantExpiresAt: at(now.Add(time.Hour))},
		tokenCase{name: "rotation, HTTP Basic", basic: true,
			setup:       func(_ *testing.T, p *providertest.Provider) string { p.SetRotate(true); return "" },
			wantRotated: true},
		tokenCase{name: "rotation, form-encoded",
			setup: func(_ *testing.T, p *providertest.Provider) string {
				p.SetRotate(true)
				p.SetForm(true)
				return ""
			},
			wantRotated: true},
		tokenCase{name: "refresh token the provider did not issue",
			setup:       func(_ *testing.T, p *providertest.Provider) string { return "" },
			wantRefused: &provider.RefusedError{Status: 400, Code: "invalid_grant", Description: "unknown or used refresh token"}},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, endpoint, client := tc.provider(t)
			rt := p.IssueRefreshToken()
			if tc.name == "refresh token the provider did not issue" {
				rt = "rt-made-up"
			}
			if strings.HasPrefix(endpoint.TokenURL, p.URL) {
				defer func() {
					if calls := p.Calls(); calls != 1 {
						t.Errorf("the provider got %d calls, want 1", calls)
					}
				}()
			}
			start := time.Now()
			tok, err := client.Refresh(context.Background(), endpoint, rt)
			tc.check(t, p, rt, tok, err, time.Since(start))
		})
	}
}

func TestClientCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range commonCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, endpoint, client := tc.provider(t)
			endpoint.Scopes = provider.Scopes(" read:a  write:b ")
			if tc.wantRaw == nil && !tc.wantNoExpiry && tc.wantRefused == nil && tc.wantUnavailable == "" && strings.HasPrefix(endpoint.TokenURL, p.URL) {
				// The fake echoes the scope the grant asked for.
				tc.wantRaw = map[string]any{"scope": "read:a write:b"}
			}
			start := time.Now()
			tok, err := client.ClientCredentials(context.Background(), endpoint)
			if err == nil && !strings.HasPrefix(endpoint.TokenURL, p.URL) {
				tok.RefreshToken = "" // the fixed answers carry one; a client credentials answer may too
			}
			tc.check(t, p, "", tok, err, time.Since(start))
		})
	}
}

func TestClientCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := newClient(time.Minute).Refresh(ctx, provider.Endpoint{TokenURL: hanging(t), ClientID: "id", ClientSecret: "secret"}, "rt")
	var unavailable *provider.UnavailableError
	if !errors.As(err, &unavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want an *UnavailableError wrapping the deadline", err)
	}
}

func TestScopes(t *testing.T) {
	for in, want := range map[string]string{"": "", "a": "a", " a  b\tc ": "a|b|c"} {
		if got := strings.Join(provider.Scopes(in), "|"); got != want {
			t.Errorf("Scopes(%q) = %q, want %q", in, got, want)
		}
	}
}
