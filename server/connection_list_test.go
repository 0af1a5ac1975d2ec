package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/server"
	"github.com/credport/credport/store/storetest"
)

// listIDs is GET /connections?query through the real stack: the connection ids of the page, in
// order, after checking that no credential is in the answer.
func (v *env) listIDs(query string) []string {
	v.t.Helper()
	res := v.do(request{method: http.MethodGet, path: "/connections?" + query, header: sdkHeaders()})
	if res.status != http.StatusOK {
		v.t.Fatalf("list %q: status %d: %s", query, res.status, res.body)
	}
	for _, s := range v.secrets.list() {
		if strings.Contains(string(res.body), s) {
			v.t.Errorf("list %q answered a secret (%.4q…)", query, s)
		}
	}
	page := decodeObject(v.t, res.body)["connections"].([]any)
	ids := make([]string, len(page))
	for i, c := range page {
		m := c.(map[string]any)
		ids[i] = fmt.Sprintf("%s/%s", m["provider_config_key"], m["connection_id"])
		if _, ok := m["credentials"]; ok {
			v.t.Errorf("list answered credentials for %s", ids[i])
		}
	}
	return ids
}

func TestListConnections(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		clk := &clock{now: mustTime(t, "2025-01-01T10:00:00Z")}
		v.db.Now = clk.Now
		v.integration("dev", "github", "OAUTH2")
		v.integration("dev", "slack", "API_KEY")
		v.integration("prod", "github", "OAUTH2")
		imp := func(api *env, pck, id, extra string) {
			t.Helper()
			creds := `{"type":"OAUTH2","access_token":"token-` + pck + `-` + id + `-secret"}`
			if pck == "slack" {
				creds = `{"type":"API_KEY","apiKey":"key-` + id + `-secret"}`
			}
			api.importOK(`{"provider_config_key":"` + pck + `","connection_id":"` + id + `","credentials":` + creds + extra + `}`)
			clk.Add(time.Second)
		}
		imp(v, "github", "acme", `,"end_user":{"id":"u-1","email":"ann@acme.test","display_name":"Ann Lee"},"tags":{"plan":"pro","team":"core"}`)
		imp(v, "slack", "acme", `,"tags":{"plan":"pro"},"metadata":{"seats":3}`)
		imp(v, "github", "Globex-West", `,"end_user":{"id":"u-2","email":"bob@globex.test"},"tags":{"plan":"free"}`)
		imp(v, "slack", "initech", ``)
		clk.Add(-time.Second) // two connections created at the same instant: id decides
		imp(v, "github", "initech", `,"tags":{"plan":"pro","team":"ops"}`)
		prod := v.on(t)
		prod.key = v.apiKey("prod", server.FullAccess)
		imp(prod, "github", "acme", ``)
		lister := v.on(t)
		lister.key = v.apiKey("dev", "environment:connections:list")

		all := []string{"github/initech", "slack/initech", "github/Globex-West", "slack/acme", "github/acme"}
		for _, tt := range []struct {
			name, query string
			want        []string
		}{
			{"everything, newest first, id breaking ties", "", all},
			{"connectionId across integrations", "connectionId=acme", []string{"slack/acme", "github/acme"}},
			{"connectionId is exact", "connectionId=acm", nil},
			{"search in connection_id ignores case", "search=GLOBEX", []string{"github/Globex-West"}},
			{"search in end user display name", "search=ann%20l", []string{"github/acme"}},
			{"search in end user email", "search=globex.test", []string{"github/Globex-West"}},
			{"endUserId", "endUserId=u-2", []string{"github/Globex-West"}},
			{"endUserOrganizationId", "endUserOrganizationId=org-1", nil},
			{"integrationId", "integrationId=slack", []string{"slack/initech", "slack/acme"}},
			{"integrationId list, trimmed", "integrationId=slack,%20github%20", all},
			{"integrationId of nothing", "integrationId=gitlab", nil},
			{"one tag", "tags[plan]=pro", []string{"github/initech", "slack/acme", "github/acme"}},
			{"every tag must match", "tags[plan]=pro&tags[team]=core", []string{"github/acme"}},
			{"end-user tags", "tags[end_user_id]=u-2", []string{"github/Globex-West"}},
			{"filters are ANDed", "integrationId=github&tags[plan]=pro", []string{"github/initech", "github/acme"}},
			{"limit", "limit=2", all[:2]},
			{"page", "limit=2&page=1", all[2:4]},
			{"last page", "limit=2&page=2", all[4:]},
			{"past the end", "limit=2&page=3", nil},
			{"the SDK's falsy values are not sent, but zero page is fine", "page=0&limit=10000", all},
		} {
			t.Run(tt.name, func(t *testing.T) {
				got := lister.on(t).listIDs(tt.query)
				if strings.Join(got, " ") != strings.Join(tt.want, " ") {
					t.Errorf("got %q, want %q", got, tt.want)
				}
			})
		}
		t.Run("another environment sees its own", func(t *testing.T) {
			if got := prod.on(t).listIDs(""); strings.Join(got, " ") != "github/acme" {
				t.Errorf("got %q", got)
			}
		})
		t.Run("item shape", func(t *testing.T) {
			res := lister.on(t).do(request{method: http.MethodGet, path: "/connections?connectionId=acme&integrationId=github"})
			items := decodeObject(t, res.body)["connections"].([]any)
			if len(items) != 1 {
				t.Fatalf("%s", res.body)
			}
			item := items[0].(map[string]any)
			utcTime(t, "created", item["created"])
			if !jsonEqual(t, item["tags"], `{"end_user_display_name":"Ann Lee","end_user_email":"ann@acme.test","end_user_id":"u-1","plan":"pro","team":"core"}`) {
				t.Errorf("tags %s", mustJSON(item["tags"]))
			}
			if !jsonEqual(t, item["metadata"], `{}`) || !jsonEqual(t, item["errors"], `[]`) || item["provider"] != "github" {
				t.Errorf("item %s", res.body)
			}
			eu, _ := item["end_user"].(map[string]any)
			if eu["id"] != "u-1" || eu["email"] != "ann@acme.test" {
				t.Errorf("end_user %v", item["end_user"])
			}
			for _, k := range []string{"updated_at", "connection_config", "last_fetched_at"} {
				if _, ok := item[k]; ok {
					t.Errorf("list item carries %s", k)
				}
			}
		})
		for _, tt := range []struct{ name, query string }{
			{"limit 0", "limit=0"},
			{"limit over 10000", "limit=10001"},
			{"limit not a number", "limit=ten"},
			{"negative page", "page=-1"},
			{"empty connectionId", "connectionId="},
			{"bad tag key", "tags[1plan]=pro"},
			{"empty tag value", "tags[plan]="},
			{"unknown parameter", "userId=u-1"},
		} {
			t.Run("400 for "+tt.name, func(t *testing.T) {
				wantError(t, lister.on(t).do(request{method: http.MethodGet, path: "/connections?" + tt.query}), http.StatusBadRequest, "invalid_query_params")
			})
		}
		t.Run("403 without the list scope", func(t *testing.T) {
			reader := v.on(t)
			reader.key = v.apiKey("dev", scopeRead, scopeReadCredentials)
			e := wantError(t, reader.do(request{method: http.MethodGet, path: "/connections"}), http.StatusForbidden, "forbidden")
			if e.message != "Insufficient scope. Required: environment:connections:list" {
				t.Errorf("message %q", e.message)
			}
		})
	})
}
