package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/contract"
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
		prod.key = v.apiKey("prod", contract.FullAccess)
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
			{"the SDK's falsy values are not sent, but zero page is fine", "page=0&limit=2000", all},
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
			{"limit over 2000", "limit=2001"},
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
		t.Run("tag keys held to TagKey", func(t *testing.T) {
			long, longest := strings.Repeat("k", 65), strings.Repeat("k", 64)
			e := wantError(t, lister.on(t).do(request{method: http.MethodGet,
				path: "/connections?tags[" + long + "]=a&tags[1plan]=b&tags[" + longest + "]=c&tags[a.b/c-d_e]=f"}),
				http.StatusBadRequest, "invalid_query_params")
			var got []string
			for _, d := range e.errors {
				got = append(got, d.Code+" "+d.Message+" "+strings.Join(d.Path, "/"))
			}
			want := []string{"invalid_key Invalid key in record tags/1plan", "invalid_key Invalid key in record tags/" + long}
			if e.message != "Invalid query parameters" || strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%q %q, want %q", e.message, got, want)
			}
		})
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

// TestListConnectionsSearchAndTags covers where the search and tag indexes could answer
// differently from the rows: case and non-ASCII letters, LIKE's wildcards in a search, searches
// too short for a trigram, several tags, and tags, end users and connections changed by PATCH,
// by a new import and by DELETE.
func TestListConnectionsSearchAndTags(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		clk := &clock{now: mustTime(t, "2025-01-01T10:00:00Z")}
		v.db.Now = clk.Now
		v.integration("dev", "github", "OAUTH2")
		imp := func(id, extra string) {
			t.Helper()
			v.importOK(`{"provider_config_key":"github","connection_id":` + mustJSON(id) +
				`,"credentials":{"type":"OAUTH2","access_token":"list-token-secret"}` + extra + `}`)
			clk.Add(time.Second)
		}
		imp("elan", `,"end_user":{"id":"u-1","email":"zoe@elan.test","display_name":"Zoë Ärger-Élan"},"tags":{"team":"core","plan":"pro","region":"eu"}`)
		imp("under_score", `,"tags":{"team":"core"}`)
		imp("underXscore", `,"tags":{"team":"core","plan":"pro"}`)
		imp("fifty", `,"end_user":{"id":"u-4","display_name":"Fifty%Off"},"tags":{"plan":"pro"}`)
		imp("fifty-off", ``)
		imp(`back\slash`, ``)
		imp(`quote"d`, ``)
		clk.Add(-time.Second) // created at the same instant as the one before: id decides
		imp("twin", `,"tags":{"team":"ops"}`)
		lister := v.on(t)
		lister.key = v.apiKey("dev", "environment:connections:list")
		updater := v.on(t)
		updater.key = v.apiKey("dev", "environment:connections:update", "environment:connections:delete")

		check := func(t *testing.T, query string, want ...string) {
			t.Helper()
			got := lister.on(t).listIDs(query)
			for i := range want {
				want[i] = "github/" + want[i]
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("%s: got %q, want %q", query, got, want)
			}
		}
		search := func(s string) string { return "search=" + url.QueryEscape(s) }
		for _, tt := range []struct {
			name, query string
			want        []string
		}{
			{"non-ASCII, other case", search("ärger-é"), []string{"elan"}},
			{"non-ASCII, upper case", search("ZOË Ä"), []string{"elan"}},
			{"email", search("@ELAN."), []string{"elan"}},
			{"short, other case", search("EL"), []string{"elan"}},
			{"short, non-ASCII, same case", search("ë"), []string{"elan"}},
			{"underscore is not a wildcard", search("under_s"), []string{"under_score"}},
			{"underscore alone", search("_"), []string{"under_score"}},
			{"percent is not a wildcard", search("y%o"), []string{"fifty"}},
			{"percent alone", search("%"), []string{"fifty"}},
			{"backslash", search(`k\s`), []string{`back\slash`}},
			{"backslash alone", search(`\`), []string{`back\slash`}},
			{"double quote", search(`e"d`), []string{`quote"d`}},
			{"several matches, newest first", search("FIFTY"), []string{"fifty-off", "fifty"}},
			{"search and tags", search("under") + "&tags[plan]=pro", []string{"underXscore"}},
			{"no match", search("nothing-like-it"), nil},
			{"one tag, newest first", "tags[team]=core", []string{"underXscore", "under_score", "elan"}},
			{"two tags", "tags[team]=core&tags[plan]=pro", []string{"underXscore", "elan"}},
			{"three tags", "tags[team]=core&tags[plan]=pro&tags[region]=eu", []string{"elan"}},
			{"a tag that no connection has with that value", "tags[team]=core&tags[region]=us", nil},
			{"tags are paged", "tags[team]=core&limit=2&page=1", []string{"elan"}},
			{"end-user tags", "tags[end_user_email]=zoe@elan.test", []string{"elan"}},
		} {
			t.Run(tt.name, func(t *testing.T) { check(t, tt.query, tt.want...) })
		}
		t.Run("ties on created_at", func(t *testing.T) {
			check(t, search(`"`)+"&limit=1", `quote"d`)
			imp("twin2", `,"tags":{"team":"ops"}`)
			clk.Add(-time.Second)
			imp("twin3", `,"tags":{"team":"ops"}`)
			check(t, "tags[team]=ops", "twin3", "twin2", "twin")
			check(t, search("TWIN"), "twin3", "twin2", "twin")
		})

		patch := func(t *testing.T, id, body string) {
			t.Helper()
			res := updater.on(t).do(request{method: http.MethodPatch, path: "/connections/" + url.PathEscape(id) + "?provider_config_key=github", body: body})
			if res.status != http.StatusOK {
				t.Fatalf("patch %s: %d %s", id, res.status, res.body)
			}
		}
		t.Run("PATCH replaces tags and end user", func(t *testing.T) {
			patch(t, "under_score", `{"tags":{"team":"ops","plan":"free"}}`)
			check(t, "tags[team]=core", "underXscore", "elan")
			check(t, "tags[team]=ops&tags[plan]=free", "under_score")
			patch(t, "fifty-off", `{"end_user":{"id":"u-9","display_name":"Grüße Straße"}}`)
			check(t, search("GRÜßE"), "fifty-off")
			check(t, "tags[end_user_id]=u-9", "fifty-off")
			patch(t, "fifty-off", `{"tags":{}}`)
			check(t, "tags[end_user_id]=u-9")
			check(t, search("grüße"), "fifty-off")
		})
		t.Run("import replaces tags and end user, or keeps them", func(t *testing.T) {
			imp("elan", `,"end_user":{"id":"u-1","email":"zoe@vital.test"},"tags":{"plan":"free"}`)
			check(t, search("zoë"))
			check(t, search("@vital"), "elan")
			check(t, "tags[team]=core", "underXscore")
			check(t, "tags[plan]=free", "under_score", "elan")
			imp("elan", ``)
			check(t, search("@vital"), "elan")
			check(t, "tags[plan]=free&tags[end_user_id]=u-1", "elan")
		})
		t.Run("deleted connections disappear", func(t *testing.T) {
			res := updater.on(t).do(request{method: http.MethodDelete, path: "/connections/" + url.PathEscape("elan") + "?provider_config_key=github"})
			if res.status != http.StatusOK {
				t.Fatalf("delete: %d %s", res.status, res.body)
			}
			check(t, search("elan"))
			check(t, search("@vital"))
			check(t, "tags[plan]=free", "under_score")
			imp("elan", ``)
			check(t, search("elan"), "elan")
			check(t, "tags[plan]=free", "under_score")
		})
	})
}
