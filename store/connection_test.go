package store_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

func newIntegration(t *testing.T, db *store.DB, env, key, mode string) store.Integration {
	t.Helper()
	in, err := db.CreateIntegration(context.Background(), store.NewIntegration{
		Environment: env, UniqueKey: key, Provider: "github", AuthMode: mode,
	})
	if err != nil {
		t.Fatalf("create integration: %v", err)
	}
	return in
}

func TestUpsertConnection(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		db := storetest.Open(t, b)
		in := newIntegration(t, db, "dev", "github", "OAUTH2")
		first := store.UpsertConnection{
			EnvironmentID:    in.EnvironmentID,
			Integration:      in,
			ConnectionID:     "c1",
			Credentials:      json.RawMessage(`{"type":"OAUTH2","access_token":"one"}`),
			Metadata:         json.RawMessage(`{"m":1}`),
			ConnectionConfig: json.RawMessage(`{"c":1}`),
			Tags:             json.RawMessage(`{"t":"1"}`),
			EndUser:          json.RawMessage(`{"id":"u1"}`),
		}
		created, err := db.UpsertConnection(ctx, first)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		if !created.Created || created.ID == 0 {
			t.Fatalf("create: got Created=%v ID=%d, want a new row", created.Created, created.ID)
		}

		tests := []struct {
			name                          string
			in                            store.UpsertConnection
			wantMeta, wantConfig, wantTag string
			wantEndUser                   string
		}{
			{
				name:     "fields left out keep their stored value",
				in:       store.UpsertConnection{Credentials: json.RawMessage(`{"type":"OAUTH2","access_token":"two"}`)},
				wantMeta: `{"m": 1}`, wantConfig: `{"c": 1}`, wantTag: `{"t": "1"}`, wantEndUser: `{"id": "u1"}`,
			},
			{
				name: "fields sent replace the stored value",
				in: store.UpsertConnection{
					Credentials: json.RawMessage(`{"type":"OAUTH2","access_token":"three"}`),
					Metadata:    json.RawMessage(`{}`), ConnectionConfig: json.RawMessage(`{"c":2}`),
					Tags: json.RawMessage(`{}`), EndUser: json.RawMessage(`{"id":"u2"}`),
				},
				wantMeta: `{}`, wantConfig: `{"c": 2}`, wantTag: `{}`, wantEndUser: `{"id": "u2"}`,
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.in.EnvironmentID, tt.in.Integration, tt.in.ConnectionID = in.EnvironmentID, in, "c1"
				got, err := db.UpsertConnection(ctx, tt.in)
				if err != nil {
					t.Fatalf("update: %v", err)
				}
				if got.Created || got.ID != created.ID || !got.CreatedAt.Equal(created.CreatedAt) {
					t.Errorf("update: got Created=%v ID=%d created_at=%v, want the row %d created at %v",
						got.Created, got.ID, got.CreatedAt, created.ID, created.CreatedAt)
				}
				if !got.UpdatedAt.After(created.UpdatedAt) {
					t.Errorf("updated_at %v not after %v", got.UpdatedAt, created.UpdatedAt)
				}
				for _, f := range []struct{ name, got, want string }{
					{"metadata", string(got.Metadata), tt.wantMeta},
					{"connection_config", string(got.ConnectionConfig), tt.wantConfig},
					{"tags", string(got.Tags), tt.wantTag},
					{"end_user", string(got.EndUser), tt.wantEndUser},
				} {
					if !jsonEqual(t, f.got, f.want) {
						t.Errorf("%s = %s, want %s", f.name, f.got, f.want)
					}
				}
			})
		}
	})
}

func TestUpsertConnectionConcurrent(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		db := storetest.Open(t, b)
		in := newIntegration(t, db, "dev", "github", "OAUTH2")
		const n = 24
		ids := make([]int64, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				c, err := db.UpsertConnection(context.Background(), store.UpsertConnection{
					EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: "same",
					Credentials: json.RawMessage(`{"type":"OAUTH2","access_token":"t"}`),
				})
				ids[i], errs[i] = c.ID, err
			})
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("import %d: %v", i, errs[i])
			}
			if ids[i] != ids[0] {
				t.Fatalf("import %d got id %d, import 0 got %d: want one connection", i, ids[i], ids[0])
			}
		}
	})
}

func TestCredentialsSealedAtRest(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		dbURL := b.NewURL(t)
		db := storetest.OpenURL(t, dbURL)
		in := newIntegration(t, db, "dev", "github", "OAUTH2")
		const secret = "very-secret-access-token"
		_, err := db.UpsertConnection(context.Background(), store.UpsertConnection{
			EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: "c1",
			Credentials: json.RawMessage(`{"type":"OAUTH2","access_token":"` + secret + `"}`),
		})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := db.RawCredentials(context.Background(), in.EnvironmentID, "github", "c1")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(raw, secret) || store.SealedKeyID(raw) != "test" {
			t.Fatalf("stored credentials %q: want a value sealed with key \"test\"", raw)
		}
	})
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("bad json %q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("bad json %q: %v", b, err)
	}
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return string(xs) == string(ys)
}
