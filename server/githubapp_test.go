package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/provider/providertest"
	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

const testAppID = "31337"

// appEnv is an API whose environment "dev" has GitHub App integrations on a fake GitHub:
// "github-app" (the app's key), "wrong-key" (a key GitHub refuses) and "unreachable" (an API
// on which nothing listens). The fake knows installations 4242 and 4343.
type appEnv struct {
	*env
	gh    *providertest.GitHub
	envID int64
}

// providerTimeout is the test servers' bound on a call to GitHub.
const providerTimeout = 300 * time.Millisecond

func newAppEnv(t *testing.T, b storetest.Backend) *appEnv {
	t.Helper()
	return newAppEnvWith(t, b, server.Config{ProviderTimeout: providerTimeout})
}

func newAppEnvWith(t *testing.T, b storetest.Backend, cfg server.Config) *appEnv {
	t.Helper()
	v := newEnvWith(t, storetest.Open(t, b), cfg)
	key := providertest.AppKey(t)
	gh := providertest.NewGitHub(t, testAppID, key)
	gh.Install("4242", "4343")
	a := &appEnv{env: v, gh: gh}
	for name, in := range map[string]struct {
		pem []byte
		url string
	}{
		"github-app":  {providertest.PKCS1PEM(key), gh.URL},
		"wrong-key":   {providertest.PKCS8PEM(t, providertest.OtherKey(t)), gh.URL},
		"unreachable": {providertest.PKCS1PEM(key), providertest.UnreachableURL(t)},
	} {
		for _, line := range providertest.PEMLines(in.pem) {
			v.secrets.add(line)
		}
		created, err := v.db.CreateIntegration(context.Background(), store.NewIntegration{
			Environment: "dev", UniqueKey: name, Provider: "github-app", AuthMode: "APP",
			AppID: testAppID, PrivateKey: in.pem, APIBaseURL: in.url,
		})
		if err != nil {
			t.Fatalf("create integration %s: %v", name, err)
		}
		a.envID = created.EnvironmentID
	}
	// Runs before the harness's log check: what GitHub was sent and what it minted are secrets too.
	t.Cleanup(func() {
		for _, jwt := range gh.JWTs() {
			v.secrets.add(jwt)
		}
		for _, tok := range gh.Tokens() {
			v.secrets.add(tok.Token)
		}
	})
	return a
}

func appBody(pck, connectionID, appID, installationID string, extra ...string) string {
	s := fmt.Sprintf(`{"provider_config_key":%q,"connection_id":%q,"credentials":{"type":"APP","app_id":%q,"installation_id":%q}`,
		pck, connectionID, appID, installationID)
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

// sealed is a connection's credentials as stored; every write re-seals them with a fresh nonce,
// so an equal value means an untouched connection.
func (a *appEnv) sealed(t *testing.T, pck, connectionID string) string {
	t.Helper()
	s, err := a.db.RawCredentials(context.Background(), a.envID, pck, connectionID)
	if errors.Is(err, store.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestImportGitHubAppMintsToken(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		a := newAppEnv(t, b)
		v := a.on(t)

		first := v.importOK(appBody("github-app", "acme", testAppID, "4242", `"connection_config":{"org":"acme","app_id":"stale","n":1.50}`))
		tok := a.gh.LastToken()
		checkAppCredentials(t, first, tok)
		if want := `{"org":"acme","app_id":"31337","installation_id":"4242","n":1.50}`; !jsonEqual(t, first["connection_config"], want) {
			t.Errorf("connection_config = %s, want %s", mustJSON(first["connection_config"]), want)
		}
		if got := a.gh.Requests(); got != 1 {
			t.Errorf("GitHub received %d requests, want 1", got)
		}
		sealed := a.sealed(t, "github-app", "acme")
		if !strings.HasPrefix(sealed, "v1:test:") || strings.Contains(sealed, tok.Token) {
			t.Errorf("stored credentials %.20q... are not sealed", sealed)
		}

		t.Run("re-import of another installation, without connection_config", func(t *testing.T) {
			second := a.on(t).importOK(appBody("github-app", "acme", testAppID, "4343"))
			tok2 := a.gh.LastToken()
			if tok2.Token == tok.Token || tok2.InstallationID != "4343" {
				t.Fatalf("GitHub minted %+v, want a fresh token of installation 4343", tok2)
			}
			checkAppCredentials(t, second, tok2)
			sameConnection(t, first, second)
			// The stored connection_config keeps its other keys; app_id and installation_id follow the request.
			if want := `{"org":"acme","app_id":"31337","installation_id":"4343","n":1.50}`; !jsonEqual(t, second["connection_config"], want) {
				t.Errorf("connection_config = %s, want %s", mustJSON(second["connection_config"]), want)
			}
		})
		t.Run("re-import of the same installation gets a fresh token", func(t *testing.T) {
			before := a.gh.LastToken()
			third := a.on(t).importOK(appBody("github-app", "acme", testAppID, "4343", `"connection_config":{"org":"other"}`))
			tok3 := a.gh.LastToken()
			if tok3.Token == before.Token {
				t.Fatal("the re-import stored the previous token, want a fresh one")
			}
			checkAppCredentials(t, third, tok3)
			sameConnection(t, first, third)
			if want := `{"org":"other","app_id":"31337","installation_id":"4343"}`; !jsonEqual(t, third["connection_config"], want) {
				t.Errorf("connection_config = %s, want %s", mustJSON(third["connection_config"]), want)
			}
		})
		t.Run("without a connection id", func(t *testing.T) {
			conn := a.on(t).importOK(`{"provider_config_key":"github-app","credentials":{"type":"APP","app_id":"31337","installation_id":"4242"}}`)
			checkAppCredentials(t, conn, a.gh.LastToken())
			if want := `{"app_id":"31337","installation_id":"4242"}`; !jsonEqual(t, conn["connection_config"], want) {
				t.Errorf("connection_config = %s, want %s", mustJSON(conn["connection_config"]), want)
			}
		})
	})
}

// checkAppCredentials requires conn's credentials to be the token GitHub minted.
func checkAppCredentials(t *testing.T, conn map[string]any, tok providertest.AppToken) {
	t.Helper()
	creds, _ := conn["credentials"].(map[string]any)
	raw := creds["raw"]
	delete(creds, "raw")
	want := fmt.Sprintf(`{"type":"APP","access_token":%q,"expires_at":%q}`, tok.Token, tok.ExpiresAt)
	if !jsonEqual(t, creds, want) {
		t.Errorf("credentials = %s, want %s", mustJSON(creds), want)
	}
	if !jsonEqual(t, raw, string(tok.Answer)) {
		t.Errorf("raw = %s, want GitHub's answer %s", mustJSON(raw), tok.Answer)
	}
	utcTime(t, "credentials.expires_at", creds["expires_at"])
}

// sameConnection requires later to be an update of first.
func sameConnection(t *testing.T, first, later map[string]any) {
	t.Helper()
	if mustJSON(later["id"]) != mustJSON(first["id"]) || later["created_at"] != first["created_at"] {
		t.Errorf("re-import made connection %v created %v, want an update of %v created %v",
			later["id"], later["created_at"], first["id"], first["created_at"])
	}
}

func TestImportGitHubAppFailures(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		a := newAppEnv(t, b)
		ctx := context.Background()
		tests := []struct {
			name           string
			pck            string
			appID          string
			installationID string
			extra          []string
			mode           providertest.GitHubMode
			wantStatus     int
			wantCode       string
			wantDetail     []fieldError
			wantMessage    []string
			wantRequests   int // requests GitHub receives
		}{
			{name: "app_id of another app", pck: "github-app", appID: "999", installationID: "4242",
				wantStatus: http.StatusBadRequest, wantCode: "invalid_body",
				wantDetail:  []fieldError{at("credentials", "app_id").withCode("app_id_mismatch")},
				wantMessage: []string{"999", "github-app"}},
			{name: "installation id not a number", pck: "github-app", appID: testAppID, installationID: "../../app",
				wantStatus: http.StatusBadRequest, wantCode: "invalid_body",
				wantDetail: []fieldError{at("credentials", "installation_id").withCode("invalid_string")}},
			{name: "invalid tags, before GitHub is asked", pck: "github-app", appID: testAppID, installationID: "4242",
				extra:      []string{`"tags":{"Team":"a","team":"b"}`},
				wantStatus: http.StatusBadRequest, wantCode: "invalid_body"},
			{name: "no such installation (404)", pck: "github-app", appID: testAppID, installationID: "9999",
				wantStatus: http.StatusBadRequest, wantCode: "invalid_body",
				wantDetail:   []fieldError{at("credentials", "installation_id").withCode("installation_not_found")},
				wantMessage:  []string{"no installation 9999", "404"},
				wantRequests: 1},
			{name: "key rejected (401)", pck: "wrong-key", appID: testAppID, installationID: "4242",
				wantStatus: http.StatusBadRequest, wantCode: "invalid_body",
				wantDetail:   []fieldError{at("credentials", "app_id").withCode("app_key_rejected")},
				wantMessage:  []string{"private key", "401"},
				wantRequests: 1},
			{name: "GitHub fails (500)", pck: "github-app", appID: testAppID, installationID: "4242", mode: providertest.GitHubFail,
				wantStatus: http.StatusBadGateway, wantCode: "provider_unavailable",
				wantMessage: []string{"500"}, wantRequests: 1},
			{name: "GitHub hangs", pck: "github-app", appID: testAppID, installationID: "4242", mode: providertest.GitHubHang,
				wantStatus: http.StatusBadGateway, wantCode: "provider_unavailable",
				wantMessage: []string{"did not answer within " + providerTimeout.String()}, wantRequests: 1},
			{name: "GitHub unreachable", pck: "unreachable", appID: testAppID, installationID: "4242",
				wantStatus: http.StatusBadGateway, wantCode: "provider_unavailable",
				wantMessage: []string{"could not be reached"}},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				v := a.on(t)
				in, err := a.db.FindIntegration(ctx, a.envID, tt.pck)
				if err != nil {
					t.Fatal(err)
				}
				existing := fmt.Sprintf("existing-%d", i)
				if _, err := a.db.UpsertConnection(ctx, store.UpsertConnection{
					EnvironmentID: a.envID, Integration: in, ConnectionID: existing,
					Credentials:      json.RawMessage(`{"type":"APP","access_token":"ghs_before","raw":{}}`),
					ConnectionConfig: json.RawMessage(`{"keep":"me"}`),
				}); err != nil {
					t.Fatal(err)
				}
				before := a.sealed(t, tt.pck, existing)
				a.gh.SetMode(tt.mode)
				defer a.gh.SetMode(providertest.GitHubNormal)

				for _, connectionID := range []string{existing, fmt.Sprintf("new-%d", i)} {
					requests := a.gh.Requests()
					start := time.Now()
					res := v.do(request{body: appBody(tt.pck, connectionID, tt.appID, tt.installationID, tt.extra...)})
					elapsed := time.Since(start)
					got := wantError(t, res, tt.wantStatus, tt.wantCode)
					if tt.wantDetail != nil {
						checkFieldErrors(t, got.errors, tt.wantDetail...)
					}
					for _, m := range tt.wantMessage {
						if !strings.Contains(got.message, m) {
							t.Errorf("message %q, want one that says %q", got.message, m)
						}
					}
					if n := a.gh.Requests() - requests; n != tt.wantRequests {
						t.Errorf("GitHub received %d requests, want %d", n, tt.wantRequests)
					}
					if elapsed > providerTimeout+2*time.Second {
						t.Errorf("answered after %s, want within the provider timeout %s", elapsed, providerTimeout)
					}
				}
				if after := a.sealed(t, tt.pck, existing); after != before {
					t.Error("the failed import changed the stored connection's credentials")
				}
				if s := a.sealed(t, tt.pck, fmt.Sprintf("new-%d", i)); s != "" {
					t.Error("the failed import stored a new connection")
				}
				if creds, err := a.db.ConnectionCredentials(ctx, a.envID, tt.pck, existing); err != nil || !strings.Contains(string(creds), "ghs_before") {
					t.Errorf("stored credentials %s (%v), want the ones from before", creds, err)
				}
			})
		}
	})
}

// TestImportGitHubAppSlowGitHub: the request's database deadline does not bound the call to
// GitHub, and the database work after a slow call still has its own.
func TestImportGitHubAppSlowGitHub(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		const requestTimeout = 200 * time.Millisecond
		a := newAppEnvWith(t, b, server.Config{RequestTimeout: requestTimeout, ProviderTimeout: 5 * time.Second})
		a.gh.SetDelay(2 * requestTimeout)
		start := time.Now()
		conn := a.importOK(appBody("github-app", "slow", testAppID, "4242"))
		if elapsed := time.Since(start); elapsed < 2*requestTimeout {
			t.Fatalf("answered after %s, before the fake GitHub did", elapsed)
		}
		checkAppCredentials(t, conn, a.gh.LastToken())
	})
}

func TestImportGitHubAppNotConfigured(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "bare-app", "APP") // an APP integration without a GitHub App
		res := v.do(request{body: appBody("bare-app", "c", testAppID, "4242")})
		got := wantError(t, res, http.StatusBadRequest, "invalid_body")
		checkFieldErrors(t, got.errors, at("credentials", "app_id").withCode("app_not_configured"))
	})
}
