package server_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/store/storetest"
)

// TestImportGitHubAppWithoutReadCredentials checks that an APP import answers the token credport
// minted only to a key that may read credentials: any other key gets what it sent and the
// token's expiry, never the token or GitHub's answer, while the token is stored all the same.
func TestImportGitHubAppWithoutReadCredentials(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		a := newAppEnv(t, b)
		for i, c := range []struct {
			name     string
			scopes   []string
			withheld bool
		}{
			{"create only", []string{"environment:connections:create"}, true},
			{"create and read", []string{"environment:connections:create", scopeRead}, true},
			{"create and read_credentials", []string{"environment:connections:create", scopeReadCredentials}, false},
			{"connections wildcard", []string{"environment:connections:*"}, false},
			{"full access", []string{contract.FullAccess}, false},
		} {
			t.Run(c.name, func(t *testing.T) {
				v := a.on(t)
				v.key = a.apiKey("dev", c.scopes...)
				id := fmt.Sprintf("acme-%d", i)
				got := v.importOK(appBody("github-app", id, testAppID, "4242"))
				tok := a.gh.LastToken()
				if !c.withheld {
					checkAppCredentials(t, got, tok)
					return
				}
				want := fmt.Sprintf(`{"type":"APP","app_id":%q,"installation_id":"4242","expires_at":%q}`, testAppID, tok.ExpiresAt)
				if !jsonEqual(t, got["credentials"], want) {
					t.Errorf("credentials = %s, want %s", mustJSON(got["credentials"]), want)
				}
				if body := mustJSON(got); strings.Contains(body, tok.Token) {
					t.Errorf("the answer carries the minted token: %s", body)
				}
				// The token is stored: a key that may read credentials gets it.
				stored := a.on(t).getConn(id, "provider_config_key=github-app")
				if creds := credentials(t, stored); creds["access_token"] != tok.Token {
					t.Errorf("stored access_token %v, want the minted one", creds["access_token"])
				}
			})
		}
		t.Run("batch items follow the same rule", func(t *testing.T) {
			v := a.on(t)
			v.key = a.apiKey("dev", "environment:connections:create")
			res := v.do(request{path: "/connections/batch", body: batchBody([]string{appBody("github-app", "batch-app", testAppID, "4242")})})
			results := batchResults(t, res, 1)
			tok := a.gh.LastToken()
			if results[0].Status != 200 {
				t.Fatalf("item: %d %s", results[0].Status, results[0].Error)
			}
			if strings.Contains(string(res.body), tok.Token) {
				t.Errorf("the batch answer carries the minted token: %s", res.body)
			}
			var conn map[string]any
			if err := json.Unmarshal(results[0].Connection, &conn); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf(`{"type":"APP","app_id":%q,"installation_id":"4242","expires_at":%q}`, testAppID, tok.ExpiresAt)
			if !jsonEqual(t, conn["credentials"], want) {
				t.Errorf("credentials = %s, want %s", mustJSON(conn["credentials"]), want)
			}
		})
		t.Run("other types echo what was sent", func(t *testing.T) {
			v := a.on(t)
			v.key = a.apiKey("dev", "environment:connections:create")
			v.integration("dev", "keys", "API_KEY")
			got := v.importOK(`{"provider_config_key":"keys","connection_id":"k","credentials":{"type":"API_KEY","apiKey":"sent-api-key-1"}}`)
			if want := `{"type":"API_KEY","apiKey":"sent-api-key-1"}`; !jsonEqual(t, got["credentials"], want) {
				t.Errorf("credentials = %s, want %s", mustJSON(got["credentials"]), want)
			}
		})
	})
}
