package providertest

// GitHub is a fake GitHub for tests of GitHub App imports. It answers
// POST /app/installations/{id}/access_tokens as GitHub does, after checking the request the way
// GitHub would (the JWT's RS256 signature against the app's public key) and the way credport
// promises to send it (claims and headers); a request that breaks a promise fails the test.

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// GitHubMode is how the fake GitHub answers a request whose JWT it accepts.
type GitHubMode int

const (
	// GitHubNormal mints tokens for known installations (201) and answers 404 for others.
	GitHubNormal GitHubMode = iota
	// GitHubFail answers 500, as GitHub does when it fails.
	GitHubFail
	// GitHubHang answers nothing until the client gives up or the test ends.
	GitHubHang
)

// GitHub is a fake GitHub API for one GitHub App. Its URL is the API base URL.
type GitHub struct {
	*httptest.Server
	AppID string
	// Key is the app's private key; the fake verifies JWTs with its public half.
	Key *rsa.PrivateKey

	t       testing.TB
	release chan struct{}

	mu            sync.Mutex
	mode          GitHubMode
	delay         time.Duration
	installations map[string]bool
	requests      int
	jwts          []string
	answers       []AppToken
}

// AppToken is one token the fake GitHub minted.
type AppToken struct {
	InstallationID string
	Token          string
	ExpiresAt      string
	// Answer is the body of the 201, exactly as sent.
	Answer []byte
}

// NewGitHub starts a fake GitHub for app appID whose private key is key; it stops when the test
// ends.
func NewGitHub(t testing.TB, appID string, key *rsa.PrivateKey) *GitHub {
	t.Helper()
	s := &GitHub{AppID: appID, Key: key, t: t, release: make(chan struct{}), installations: map[string]bool{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		close(s.release)
		s.Close()
	})
	return s
}

// Install makes installation ids of the app known.
func (s *GitHub) Install(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.installations[id] = true
	}
}

// SetMode changes how the fake answers from now on.
func (s *GitHub) SetMode(m GitHubMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = m
}

// SetDelay makes the fake wait d before it answers, as a slow GitHub does.
func (s *GitHub) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Requests is the number of requests the fake received.
func (s *GitHub) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// JWTs are the bearer tokens of every request received, in order.
func (s *GitHub) JWTs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.jwts...)
}

// Tokens are the tokens minted so far, in order.
func (s *GitHub) Tokens() []AppToken {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AppToken(nil), s.answers...)
}

// LastToken is the last token minted; the test fails when there is none.
func (s *GitHub) LastToken() AppToken {
	s.t.Helper()
	tokens := s.Tokens()
	if len(tokens) == 0 {
		s.t.Fatal("the fake GitHub minted no token")
	}
	return tokens[len(tokens)-1]
}

func (s *GitHub) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	mode, delay := s.mode, s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		case <-s.release:
			return
		}
	}

	id, ok := installationPath(r.URL.EscapedPath())
	if r.Method != http.MethodPost || !ok {
		s.t.Errorf("fake GitHub: %s %s, want POST /app/installations/{id}/access_tokens", r.Method, r.URL.EscapedPath())
		githubAnswer(w, http.StatusNotFound, notFound)
		return
	}
	if got := r.Header.Get("Accept"); got != "application/vnd.github+json" {
		s.t.Errorf("fake GitHub: Accept %q, want application/vnd.github+json", got)
	}
	if got := r.Header.Get("X-GitHub-Api-Version"); got != "2022-11-28" {
		s.t.Errorf("fake GitHub: X-GitHub-Api-Version %q, want 2022-11-28", got)
	}
	assertion, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !found || assertion == "" {
		s.t.Errorf("fake GitHub: Authorization %q, want Bearer and a JWT", r.Header.Get("Authorization"))
		githubAnswer(w, http.StatusUnauthorized, badJWT)
		return
	}
	s.mu.Lock()
	s.jwts = append(s.jwts, assertion)
	s.mu.Unlock()
	if !s.checkJWT(assertion) {
		githubAnswer(w, http.StatusUnauthorized, badJWT)
		return
	}

	switch mode {
	case GitHubFail:
		githubAnswer(w, http.StatusInternalServerError, `{"message":"Server Error"}`)
		return
	case GitHubHang:
		select {
		case <-r.Context().Done():
		case <-s.release:
		}
		return
	}
	s.mu.Lock()
	known := s.installations[id]
	s.mu.Unlock()
	if !known {
		githubAnswer(w, http.StatusNotFound, notFound)
		return
	}
	tok := AppToken{
		InstallationID: id,
		Token:          "ghs_" + randomHex(18),
		ExpiresAt:      time.Now().UTC().Add(time.Hour).Truncate(time.Second).Format(time.RFC3339),
	}
	tok.Answer, _ = json.Marshal(map[string]any{
		"token":                tok.Token,
		"expires_at":           tok.ExpiresAt,
		"permissions":          map[string]string{"contents": "read", "metadata": "read"},
		"repository_selection": "all",
	})
	s.mu.Lock()
	s.answers = append(s.answers, tok)
	s.mu.Unlock()
	githubAnswer(w, http.StatusCreated, string(tok.Answer))
}

// checkJWT tells whether the app's key signed the JWT, as GitHub checks it. Claims that are not
// what credport promises fail the test.
func (s *GitHub) checkJWT(assertion string) bool {
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(assertion, &claims, func(*jwt.Token) (any, error) { return &s.Key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuedAt(), jwt.WithExpirationRequired())
	if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		return false // another key signed it: GitHub answers 401
	}
	if err != nil {
		s.t.Errorf("fake GitHub: JWT refused: %v", err)
		return false
	}
	now := time.Now()
	if claims.Issuer != s.AppID {
		s.t.Errorf("fake GitHub: JWT iss %q, want the app id %q", claims.Issuer, s.AppID)
		return false
	}
	if claims.IssuedAt == nil || claims.ExpiresAt == nil {
		s.t.Errorf("fake GitHub: JWT without iat or exp")
		return false
	}
	if d := now.Add(-60 * time.Second).Sub(claims.IssuedAt.Time); d < -2*time.Second || d > 5*time.Second {
		s.t.Errorf("fake GitHub: JWT iat %s, want now - 60 s (%s)", claims.IssuedAt.Time, now.Add(-60*time.Second))
		return false
	}
	if d := claims.ExpiresAt.Sub(claims.IssuedAt.Time); d != 10*time.Minute {
		s.t.Errorf("fake GitHub: JWT exp - iat = %s, want 10m (iat now - 60 s, exp now + 9 min)", d)
		return false
	}
	return true
}

// installationPath is the installation id of /app/installations/{id}/access_tokens.
func installationPath(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/app/installations/")
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, "/access_tokens")
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", false
	}
	return id, true
}

const (
	notFound = `{"message":"Not Found","documentation_url":"https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app","status":"404"}`
	badJWT   = `{"message":"A JSON web token could not be decoded","documentation_url":"https://docs.github.com/rest","status":"401"}`
)

func githubAnswer(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// UnreachableURL is an http URL on which nothing listens: connections to it are refused.
func UnreachableURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// keys are RSA keys made once per test binary: making one takes a noticeable moment.
var keys = sync.OnceValues(func() ([2]*rsa.PrivateKey, error) {
	var out [2]*rsa.PrivateKey
	for i := range out {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return out, err
		}
		out[i] = k
	}
	return out, nil
})

// AppKey is an RSA key for a GitHub App.
func AppKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := keys()
	if err != nil {
		t.Fatal(err)
	}
	return k[0]
}

// OtherKey is an RSA key that is not AppKey: GitHub refuses what it signs.
func OtherKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := keys()
	if err != nil {
		t.Fatal(err)
	}
	return k[1]
}

// PKCS1PEM is key as GitHub issues it: PEM "RSA PRIVATE KEY".
func PKCS1PEM(key *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

// PKCS8PEM is key as PEM "PRIVATE KEY".
func PKCS8PEM(t testing.TB, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// PEMLines are the base64 lines of a PEM file's body, for scans that must not find the key.
func PEMLines(data []byte) []string {
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if line != "" && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
