package server_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

func TestDeleteConnection(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		v.integration("dev", "gitlab", "OAUTH2")
		v.integration("prod", "github", "OAUTH2")
		prod := v.on(t)
		prod.key = v.apiKey("prod", contract.FullAccess)
		first := v.importOK(oauth2WithRefresh)
		v.importOK(`{"provider_config_key":"gitlab","connection_id":"acme","credentials":{"type":"OAUTH2","access_token":"gitlab-token-1111"}}`)
		prod.importOK(`{"provider_config_key":"github","connection_id":"acme","credentials":{"type":"OAUTH2","access_token":"prod-token-2222"}}`)
		envID := func(name string) int64 {
			id, err := v.db.EnsureEnvironment(context.Background(), name)
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		del := func(api *env, id, query string) response {
			return api.do(request{method: http.MethodDelete, path: "/connections/" + id + "?" + query, header: sdkHeaders()})
		}
		deleter := v.on(t)
		deleter.key = v.apiKey("dev", "environment:connections:delete")
		reader := v.on(t)
		reader.key = v.apiKey("dev", scopeRead, scopeReadCredentials, "environment:connections:create")

		t.Run("without the delete scope", func(t *testing.T) {
			e := wantError(t, del(reader.on(t), "acme", "provider_config_key=github"), http.StatusForbidden, "forbidden")
			if e.message != "Insufficient scope. Required: environment:connections:delete" {
				t.Errorf("message %q", e.message)
			}
		})
		t.Run("unknown integration", func(t *testing.T) {
			e := wantError(t, del(deleter.on(t), "acme", "provider_config_key=nope"), http.StatusBadRequest, "unknown_connection")
			if e.message != "" {
				t.Errorf("message %q, want none", e.message)
			}
		})
		t.Run("unknown connection", func(t *testing.T) {
			wantError(t, del(deleter.on(t), "other", "provider_config_key=github"), http.StatusBadRequest, "unknown_connection")
		})
		t.Run("missing provider_config_key", func(t *testing.T) {
			wantError(t, del(deleter.on(t), "acme", ""), http.StatusBadRequest, "invalid_query_params")
		})
		t.Run("deletes the row and its sealed credentials", func(t *testing.T) {
			res := del(deleter.on(t), "acme", "provider_config_key=github")
			if res.status != http.StatusOK || !jsonEqual(t, decodeObject(t, res.body), `{"success":true}`) {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			if _, err := v.db.RawCredentials(context.Background(), envID("dev"), "github", "acme"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("sealed credentials still stored (err %v)", err)
			}
			wantError(t, reader.on(t).getConn("acme", "provider_config_key=github"), http.StatusNotFound, "not_found")
		})
		t.Run("deleting again", func(t *testing.T) {
			wantError(t, del(deleter.on(t), "acme", "provider_config_key=github"), http.StatusBadRequest, "unknown_connection")
		})
		t.Run("other integrations and environments keep theirs", func(t *testing.T) {
			if res := reader.on(t).getConn("acme", "provider_config_key=gitlab"); res.status != http.StatusOK {
				t.Errorf("gitlab/acme: %d %s", res.status, res.body)
			}
			if res := prod.on(t).getConn("acme", "provider_config_key=github"); res.status != http.StatusOK {
				t.Errorf("prod github/acme: %d %s", res.status, res.body)
			}
		})
		t.Run("re-import creates a new connection", func(t *testing.T) {
			again := reader.on(t).importOK(oauth2WithRefresh)
			if mustJSON(again["id"]) == mustJSON(first["id"]) {
				t.Errorf("re-import kept id %v", again["id"])
			}
			if again["created_at"] == nil || utcTime(t, "created_at", again["created_at"]).Before(utcTime(t, "created_at", first["created_at"])) {
				t.Errorf("created_at %v", again["created_at"])
			}
		})
	})
}
