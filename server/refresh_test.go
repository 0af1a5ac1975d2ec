package server_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/credport/credport/provider/providertest"
	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// refreshEnv is an API whose integration "oauth" renews its tokens at a fake provider.
type refreshEnv struct {
	*env
	provider *providertest.Provider
}

func newRefreshEnv(t *testing.T, b storetest.Backend, cfg server.Config) refreshEnv {
	t.Helper()
	v := newEnvWith(t, storetest.Open(t, b), cfg)
	p := providertest.New(t, "client-id-1", "client-secret-of-the-integration")
	v.secrets.add(p.ClientSecret)
	_, err := v.db.CreateIntegration(context.Background(), store.NewIntegration{
		Environment: "dev", UniqueKey: "oauth", Provider: "fake", AuthMode: "OAUTH2",
		ClientID: p.ClientID, ClientSecret: p.ClientSecret, TokenURL: p.TokenURL(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return refreshEnv{env: v, provider: p}
}

// importExpiring imports connection id with a token that expired and a refresh token the
// provider accepts, and returns that refresh token.
func (v refreshEnv) importExpiring(id string) string {
	v.t.Helper()
	rt := v.provider.IssueRefreshToken()
	v.importOK(fmt.Sprintf(`{"provider_config_key":"oauth","connection_id":%q,"credentials":{"type":"OAUTH2","access_token":"old-access-token-%s","refresh_token":%q,"expires_at":%q}}`,
		id, id, rt, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)))
	return rt
}

func TestRefreshOnReadSmoke(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newRefreshEnv(t, b, server.Config{})
		v.importExpiring("c1")
		res := v.getConn("c1", "provider_config_key=oauth")
		if res.status != http.StatusOK {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
		creds := decodeObject(t, res.body)["credentials"].(map[string]any)
		if creds["access_token"] == "old-access-token-c1" {
			t.Errorf("not refreshed: %s", res.body)
		}
		if v.provider.Calls() != 1 {
			t.Errorf("provider calls %d", v.provider.Calls())
		}
		t.Logf("%s", res.body)
	})
}
