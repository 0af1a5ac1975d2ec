package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/credport/credport/server"
	"github.com/credport/credport/store/storetest"
)

// listPage is one page of GET /connections?query: its connection ids, its next_cursor ("" on the
// last page) and the size of its body.
func (v *env) listPage(query string) (ids []string, next string, size int) {
	v.t.Helper()
	res := v.do(request{method: http.MethodGet, path: "/connections?" + query})
	if res.status != http.StatusOK {
		v.t.Fatalf("list %q: status %d: %s", query, res.status, res.body)
	}
	body := decodeObject(v.t, res.body)
	for _, c := range body["connections"].([]any) {
		ids = append(ids, c.(map[string]any)["connection_id"].(string))
	}
	if n, ok := body["next_cursor"]; ok {
		next = n.(string)
		if next == "" {
			v.t.Errorf("list %q: an empty next_cursor", query)
		}
	}
	return ids, next, len(res.body)
}

// listAll follows next_cursor from GET /connections?query to the last page and returns the ids of
// every page.
func (v *env) listAll(query string) [][]string {
	v.t.Helper()
	var pages [][]string
	ids, next, _ := v.listPage(query)
	pages = append(pages, ids)
	for next != "" {
		if len(pages) > 1000 {
			v.t.Fatal("next_cursor never ends")
		}
		ids, next, _ = v.listPage(query + "&cursor=" + url.QueryEscape(next))
		pages = append(pages, ids)
	}
	return pages
}

// TestListPageBounds checks that a list page is bounded in rows and bytes: 100 connections by
// default, at most 2000 on request, never a body past 4 MiB unless one connection alone is that
// large; next_cursor continues a page that ended early or full, and the pages together hold every
// connection once, in order.
func TestListPageBounds(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnvWith(t, storetest.Open(t, b), server.Config{MaxBodyBytes: 8 << 20})
		v.integration("dev", "keys", "API_KEY")
		v.integration("dev", "big", "API_KEY")
		importOne := func(v *env, pck, id, metadata string) {
			v.importOK(fmt.Sprintf(`{"provider_config_key":%q,"connection_id":%q,"credentials":{"type":"API_KEY","apiKey":"secret-api-key-1"},"metadata":%s}`,
				pck, id, metadata))
		}
		var small []string
		for i := range 105 {
			id := fmt.Sprintf("small-%03d", i)
			importOne(v, "keys", id, `{}`)
			small = append([]string{id}, small...) // newest first
		}

		t.Run("default limit is 100", func(t *testing.T) {
			u := v.on(t)
			ids, next, _ := u.listPage("integrationId=keys")
			if len(ids) != 100 || next == "" {
				t.Fatalf("first page: %d connections, next_cursor %q; want 100 and a cursor", len(ids), next)
			}
			pages := u.listAll("integrationId=keys")
			if len(pages) != 2 || len(pages[1]) != 5 {
				t.Errorf("pages of %v connections, want 100 and 5", lens(pages))
			}
			if got := slices.Concat(pages...); !slices.Equal(got, small) {
				t.Errorf("the pages hold %v, want %v", got, small)
			}
		})
		t.Run("a full page of an explicit limit", func(t *testing.T) {
			u := v.on(t)
			pages := u.listAll("integrationId=keys&limit=50")
			if !slices.Equal(lens(pages), []int{50, 50, 5}) {
				t.Errorf("pages of %v connections, want 50, 50, 5", lens(pages))
			}
			if got := slices.Concat(pages...); !slices.Equal(got, small) {
				t.Errorf("the pages hold %v, want %v", got, small)
			}
			// A cursor says where the page starts, whatever page says.
			_, next, _ := u.listPage("integrationId=keys&limit=50")
			withCursor, _, _ := u.listPage("integrationId=keys&limit=50&cursor=" + next)
			withBoth, _, _ := u.listPage("integrationId=keys&limit=50&page=2&cursor=" + next)
			if !slices.Equal(withCursor, small[50:100]) || !slices.Equal(withBoth, withCursor) {
				t.Errorf("the second page is %v, and with page=2 %v; want %v", withCursor, withBoth, small[50:100])
			}
			// A page that holds the last connection exactly has no next page.
			if _, next, _ := u.listPage("integrationId=keys&limit=5&page=20"); next != "" {
				t.Errorf("the last page has next_cursor %q", next)
			}
		})

		// Six connections of 900 KB metadata: four fit in 4 MiB.
		var big []string
		blob := strings.Repeat("x", 900_000)
		for i := range 6 {
			id := fmt.Sprintf("big-%d", i)
			importOne(v, "big", id, `{"blob":"`+blob+`"}`)
			big = append([]string{id}, big...)
		}
		for _, query := range []string{"integrationId=big", "integrationId=big&limit=2000", "integrationId=big,keys&limit=2000"} {
			t.Run("bytes bound "+query, func(t *testing.T) {
				u := v.on(t)
				ids, next, size := u.listPage(query)
				if len(ids) != 4 || next == "" || size > 4<<20 {
					t.Fatalf("first page: %d connections, %d bytes, next_cursor %q; want 4 within 4 MiB and a cursor", len(ids), size, next)
				}
				pages := u.listAll(query)
				want := big
				if strings.Contains(query, "keys") {
					want = append(slices.Clone(big), small...)
				}
				if got := slices.Concat(pages...); !slices.Equal(got, want) {
					t.Errorf("the pages hold %v, want %v", got, want)
				}
			})
		}
		t.Run("a connection larger than the budget is a page of its own", func(t *testing.T) {
			u := v.on(t)
			huge := `{"a":"` + blob + `","b":"` + blob + `","c":"` + blob + `","d":"` + blob + `","e":"` + blob + `"}`
			importOne(u, "big", "huge", huge)
			ids, next, _ := u.listPage("integrationId=big")
			if !slices.Equal(ids, []string{"huge"}) || next == "" {
				t.Errorf("first page %v, next_cursor %q; want only the huge connection and a cursor", ids, next)
			}
		})
		t.Run("pages longer than one chunk of rows", func(t *testing.T) {
			u := v.on(t)
			u.integration("dev", "many", "API_KEY")
			var many []string
			for i := range 265 {
				id := fmt.Sprintf("many-%03d", i)
				importOne(u, "many", id, `{}`)
				many = append([]string{id}, many...)
			}
			ids, next, _ := u.listPage("integrationId=many&limit=2000")
			if !slices.Equal(ids, many) || next != "" {
				t.Errorf("limit 2000: %d connections, next_cursor %q; want all 265 and none", len(ids), next)
			}
			pages := u.listAll("integrationId=many&limit=260")
			if !slices.Equal(lens(pages), []int{260, 5}) || !slices.Equal(slices.Concat(pages...), many) {
				t.Errorf("limit 260: pages of %v connections, want 260 and 5, in order", lens(pages))
			}
		})
		t.Run("legacy path", func(t *testing.T) {
			u := v.on(t)
			res := u.do(request{method: http.MethodGet, path: "/connection?integrationId=keys&limit=100"})
			if res.status != http.StatusOK || !strings.Contains(string(res.body), `"next_cursor":"`) {
				t.Errorf("status %d, body without next_cursor", res.status)
			}
		})
		for _, c := range []struct{ name, query string }{
			{"a cursor the server never gave", "cursor=bm9wZQ"},
			{"a cursor with a bad character", "cursor=a.b"},
			{"limit over 2000", "limit=2001"},
		} {
			t.Run(c.name, func(t *testing.T) {
				wantError(t, v.on(t).do(request{method: http.MethodGet, path: "/connections?" + c.query}), http.StatusBadRequest, "invalid_query_params")
			})
		}
	})
}

func lens(pages [][]string) []int {
	out := make([]int, len(pages))
	for i, p := range pages {
		out[i] = len(p)
	}
	return out
}
