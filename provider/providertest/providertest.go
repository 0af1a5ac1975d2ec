// Package providertest fakes the providers credport calls, for tests: GitHub minting the
// installation tokens of GitHub Apps, and an OAuth 2 provider: a token endpoint that checks the
// grant, the client's authentication and the refresh tokens it issued, and that can be told to
// rotate refresh tokens, refuse, fail, answer slowly or hang.
package providertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Mode is how the token endpoint answers.
type Mode int

const (
	// OK issues tokens.
	OK Mode = iota
	// InvalidGrant refuses every grant with 400 invalid_grant.
	InvalidGrant
	// Fail answers 500.
	Fail
	// Hang never answers; the request ends when the client gives up.
	Hang
)

// Provider is a fake token endpoint at URL + "/token".
type Provider struct {
	URL          string
	ClientID     string
	ClientSecret string
	// Basic makes the client authenticate with HTTP Basic instead of the form body.
	Basic bool

	mu sync.Mutex
	// mode, delay, rotate, expiresIn and form are the behaviour of the next answers.
	mode      Mode
	delay     time.Duration
	rotate    bool
	expiresIn int
	form      bool
	// refreshTokens are the refresh tokens that may be used, with the count that issued them.
	refreshTokens map[string]bool
	issued        int
	// tokens is every access and refresh token the provider issued, for log checks.
	tokens   []string
	calls    atomic.Int64
	failures []string
	// held, while not nil, holds each request until it is closed; arrived hears of each.
	held, arrived chan struct{}
	// closed ends the requests that hang or wait when the test ends.
	closed chan struct{}
}

// Hold makes the requests that follow wait, once read, until release is called: the test then
// knows a call is under way, and looks at what the caller holds meanwhile. arrived receives once
// for each request that waits.
func (p *Provider) Hold() (arrived <-chan struct{}, release func()) {
	held, arrivals := make(chan struct{}), make(chan struct{}, 64)
	p.mu.Lock()
	p.held, p.arrived = held, arrivals
	p.mu.Unlock()
	var once sync.Once
	return arrivals, func() {
		once.Do(func() {
			p.mu.Lock()
			p.held, p.arrived = nil, nil
			p.mu.Unlock()
			close(held)
		})
	}
}

// New starts a fake provider for client clientID/clientSecret, authenticating in the form body.
// It issues tokens that expire in an hour and keeps refresh tokens (no rotation).
func New(t testing.TB, clientID, clientSecret string) *Provider {
	t.Helper()
	p := &Provider{ClientID: clientID, ClientSecret: clientSecret, expiresIn: 3600, refreshTokens: map[string]bool{},
		closed: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() {
		close(p.closed)
		srv.CloseClientConnections()
		srv.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, f := range p.failures {
			t.Errorf("fake provider: %s", f)
		}
	})
	p.URL = srv.URL
	return p
}

// TokenURL is the provider's token endpoint.
func (p *Provider) TokenURL() string { return p.URL + "/token" }

// SetMode sets how the next requests are answered.
func (p *Provider) SetMode(m Mode) { p.mu.Lock(); p.mode = m; p.mu.Unlock() }

// SetDelay makes every answer wait d first, so that refreshes overlap.
func (p *Provider) SetDelay(d time.Duration) { p.mu.Lock(); p.delay = d; p.mu.Unlock() }

// SetRotate makes a refresh invalidate the refresh token it used and issue a new one.
func (p *Provider) SetRotate(rotate bool) { p.mu.Lock(); p.rotate = rotate; p.mu.Unlock() }

// SetExpiresIn sets expires_in of the tokens issued; 0 leaves it out.
func (p *Provider) SetExpiresIn(seconds int) { p.mu.Lock(); p.expiresIn = seconds; p.mu.Unlock() }

// SetForm makes answers form-encoded, as GitHub answers clients that do not ask for JSON.
func (p *Provider) SetForm(form bool) { p.mu.Lock(); p.form = form; p.mu.Unlock() }

// Calls counts the requests the token endpoint received.
func (p *Provider) Calls() int { return int(p.calls.Load()) }

// IssueRefreshToken makes a refresh token the provider will accept, as an authorization would.
func (p *Provider) IssueRefreshToken() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.issued++
	rt := fmt.Sprintf("rt-%d-%d", p.issued, time.Now().UnixNano())
	p.refreshTokens[rt] = true
	p.tokens = append(p.tokens, rt)
	return rt
}

// Issued is every access and refresh token the provider has issued.
func (p *Provider) Issued() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tokens...)
}

// Valid tells whether the provider would accept refresh token rt now.
func (p *Provider) Valid(rt string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refreshTokens[rt]
}

func (p *Provider) fail(format string, args ...any) {
	p.mu.Lock()
	p.failures = append(p.failures, fmt.Sprintf(format, args...))
	p.mu.Unlock()
}

func (p *Provider) serve(w http.ResponseWriter, r *http.Request) {
	p.calls.Add(1)
	p.mu.Lock()
	mode, delay := p.mode, p.delay
	p.mu.Unlock()
	// The body is read first: until it is, the server does not notice a client that gives up,
	// and the request's context would not end.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	p.mu.Lock()
	held, arrived := p.held, p.arrived
	p.mu.Unlock()
	if held != nil {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-held:
		case <-r.Context().Done():
			return
		case <-p.closed:
			return
		}
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		case <-p.closed:
			return
		}
	}
	switch mode {
	case Hang:
		select {
		case <-r.Context().Done():
		case <-p.closed:
		}
		return
	case Fail:
		http.Error(w, "upstream exploded", http.StatusInternalServerError)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/token" {
		p.fail("unexpected %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		p.fail("Content-Type %q", ct)
	}
	if err := r.ParseForm(); err != nil {
		p.fail("form: %v", err)
		oauthError(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	if !p.authenticated(r) {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	if mode == InvalidGrant {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "The refresh token is invalid or revoked")
		return
	}
	switch grant := r.PostForm.Get("grant_type"); grant {
	case "refresh_token":
		p.refresh(w, r.PostForm.Get("refresh_token"))
	case "client_credentials":
		p.answer(w, map[string]any{"scope": r.PostForm.Get("scope")})
	default:
		p.fail("grant_type %q", grant)
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", grant)
	}
}

// authenticated checks the client's credentials where the provider expects them, and only there.
func (p *Provider) authenticated(r *http.Request) bool {
	id, secret, basic := r.BasicAuth()
	inBody := r.PostForm.Has("client_secret")
	if p.Basic {
		if inBody {
			p.fail("client secret in the body, want HTTP Basic")
		}
		// RFC 6749 2.3.1: Basic credentials are form-encoded first.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		return basic && id == p.ClientID && secret == p.ClientSecret
	}
	if basic {
		p.fail("HTTP Basic, want the client secret in the body")
	}
	return r.PostForm.Get("client_id") == p.ClientID && r.PostForm.Get("client_secret") == p.ClientSecret
}

func (p *Provider) refresh(w http.ResponseWriter, rt string) {
	p.mu.Lock()
	valid := p.refreshTokens[rt]
	extra := map[string]any{}
	if valid && p.rotate {
		delete(p.refreshTokens, rt)
		p.issued++
		next := fmt.Sprintf("rt-%d-%d", p.issued, time.Now().UnixNano())
		p.refreshTokens[next] = true
		p.tokens = append(p.tokens, next)
		extra["refresh_token"] = next
	}
	p.mu.Unlock()
	if !valid {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown or used refresh token")
		return
	}
	p.answer(w, extra)
}

// answer issues a new access token with the fields of extra.
func (p *Provider) answer(w http.ResponseWriter, extra map[string]any) {
	p.mu.Lock()
	p.issued++
	access := fmt.Sprintf("at-%d-%d", p.issued, time.Now().UnixNano())
	p.tokens = append(p.tokens, access)
	body := map[string]any{"access_token": access, "token_type": "bearer"}
	if p.expiresIn > 0 {
		body["expires_in"] = p.expiresIn
	}
	form := p.form
	p.mu.Unlock()
	for k, v := range extra {
		body[k] = v
	}
	if form {
		vals := url.Values{}
		for k, v := range body {
			vals.Set(k, fmt.Sprint(v))
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		_, _ = w.Write([]byte(vals.Encode()))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

func oauthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}
