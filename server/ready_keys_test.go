package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// TestReadyReportsMissingKeys: a server whose key ring lacks a key that stored values were sealed
// with (here by another server with another key) is not ready.
func TestReadyReportsMissingKeys(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		dbURL := b.NewURL(t)
		v := newEnvOn(t, storetest.OpenURL(t, dbURL))
		otherKey := "other:" + store.NewKey()
		ring, err := store.ParseKeyring(otherKey + "," + storetest.TestKey)
		if err != nil {
			t.Fatal(err)
		}
		other, err := store.Open(context.Background(), store.Config{URL: dbURL, Keys: ring})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = other.Close() })
		ready := func() response {
			return v.do(request{method: http.MethodGet, path: "/ready", auth: strPtr(""), contentType: strPtr("")})
		}
		for _, step := range []struct {
			name   string
			act    func(t *testing.T)
			status int
		}{
			{name: "every value sealed with the server's key", act: func(t *testing.T) {
				if _, err := v.db.CreateIntegration(context.Background(), store.NewIntegration{Environment: "dev", UniqueKey: "mine",
					Provider: "github", AuthMode: "OAUTH2", ClientID: "id", ClientSecret: "secret-one"}); err != nil {
					t.Fatal(err)
				}
			}, status: http.StatusOK},
			{name: "another server seals with a key this one lacks", act: func(t *testing.T) {
				if _, err := other.CreateIntegration(context.Background(), store.NewIntegration{Environment: "dev", UniqueKey: "theirs",
					Provider: "github", AuthMode: "OAUTH2", ClientID: "id", ClientSecret: "secret-two"}); err != nil {
					t.Fatal(err)
				}
			}, status: http.StatusServiceUnavailable},
		} {
			step.act(t)
			res := ready()
			if res.status != step.status {
				t.Fatalf("%s: /ready answered %d, want %d: %s", step.name, res.status, step.status, res.body)
			}
		}
		if !strings.Contains(string(ready().body), `"code":"service_unavailable"`) {
			t.Error("the 503 does not carry the code service_unavailable")
		}
		if !strings.Contains(v.logs.String(), `"missing_key_ids":["other"]`) {
			t.Errorf("the log does not name the missing key id:\n%s", v.logs.String())
		}
	})
}
