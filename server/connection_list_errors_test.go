package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/credport/credport/provider/providertest"
	"github.com/credport/credport/server"
	"github.com/credport/credport/store/storetest"
)

// listErrors is the errors of each connection of GET /connections?query, by connection id.
func (v *env) listErrors(query string) map[string]string {
	v.t.Helper()
	res := v.do(request{method: http.MethodGet, path: "/connections?" + query})
	if res.status != http.StatusOK {
		v.t.Fatalf("list: status %d: %s", res.status, res.body)
	}
	out := map[string]string{}
	for _, c := range decodeObject(v.t, res.body)["connections"].([]any) {
		m := c.(map[string]any)
		out[m["connection_id"].(string)] = mustJSON(m["errors"])
	}
	return out
}

// TestListShowsRefreshError checks that the list shows the auth error of a connection whose
// refresh the provider refused, as GET /connections/{connectionId} does, and that a re-import
// clears it in both.
func TestListShowsRefreshError(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		clk := &clock{now: time.Now().UTC().Truncate(time.Second)}
		v := newRefreshEnv(t, b, server.Config{Now: clk.Now})
		v.importExpiring("refused")
		v.importExpiring("fine")
		v.provider.SetMode(providertest.InvalidGrant)
		wantError(t, v.read("refused", ""), http.StatusBadRequest, "invalid_credentials")

		got := v.connErrors("refused")
		if got == "[]" {
			t.Fatalf("GET shows no error after a refusal")
		}
		for _, query := range []string{"integrationId=oauth", "connectionId=refused", "search=refused", "limit=1&page=1"} {
			list := v.listErrors(query)
			if list["refused"] != got {
				t.Errorf("list %q: errors %s, want %s as GET shows them", query, list["refused"], got)
			}
			if e, ok := list["fine"]; ok && e != "[]" {
				t.Errorf("list %q: errors of an untouched connection %s, want []", query, e)
			}
		}

		v.provider.SetMode(providertest.OK)
		v.importExpiring("refused")
		if list := v.listErrors("integrationId=oauth"); list["refused"] != "[]" {
			t.Errorf("errors after a re-import %s, want []", list["refused"])
		}
	})
}
