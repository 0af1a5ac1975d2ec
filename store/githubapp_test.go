package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/credport/credport/provider/providertest"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

func TestCreateIntegrationGitHubApp(t *testing.T) {
	key := providertest.AppKey(t)
	pemData := providertest.PKCS1PEM(key)
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		db := storetest.Open(t, b)
		tests := []struct {
			name    string
			in      store.NewIntegration
			wantErr string
			wantURL string
		}{
			{name: "default API", in: store.NewIntegration{AuthMode: "APP", AppID: "1", PrivateKey: pemData},
				wantURL: "https://api.github.com"},
			{name: "GitHub Enterprise Server", in: store.NewIntegration{AuthMode: "APP", AppID: "1", PrivateKey: pemData,
				APIBaseURL: "https://ghe.example.test/api/v3//"}, wantURL: "https://ghe.example.test/api/v3"},
			{name: "APP without a GitHub App", in: store.NewIntegration{AuthMode: "APP"}},
			{name: "app id without a key", in: store.NewIntegration{AuthMode: "APP", AppID: "1"},
				wantErr: "needs both an app id and a private key"},
			{name: "key without an app id", in: store.NewIntegration{AuthMode: "APP", PrivateKey: pemData},
				wantErr: "needs both an app id and a private key"},
			{name: "app id with spaces", in: store.NewIntegration{AuthMode: "APP", AppID: " 1", PrivateKey: pemData},
				wantErr: "surrounding spaces"},
			{name: "GitHub App on another auth mode", in: store.NewIntegration{AuthMode: "OAUTH2", AppID: "1", PrivateKey: pemData},
				wantErr: "needs auth mode APP"},
			{name: "key not PEM", in: store.NewIntegration{AuthMode: "APP", AppID: "1", PrivateKey: []byte("nope")},
				wantErr: "private key: no PEM block found"},
			{name: "API base URL with a query", in: store.NewIntegration{AuthMode: "APP", AppID: "1", PrivateKey: pemData,
				APIBaseURL: "https://ghe.example.test/api/v3?x=1"}, wantErr: "must not have a query"},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.in.Environment, tt.in.UniqueKey, tt.in.Provider = "env-"+string(rune('a'+i)), "app", "github-app"
				got, err := db.CreateIntegration(ctx, tt.in)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
					}
					if _, err := db.ListIntegrations(ctx, tt.in.Environment); !errors.Is(err, store.ErrNotFound) {
						t.Errorf("environment of a refused integration: %v, want ErrNotFound", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				found, err := db.FindIntegration(ctx, got.EnvironmentID, "app")
				if err != nil {
					t.Fatal(err)
				}
				if !found.CreatedAt.Equal(got.CreatedAt) {
					t.Errorf("stored created_at %s, returned %s", found.CreatedAt, got.CreatedAt)
				}
				if !found.UpdatedAt.Equal(got.UpdatedAt) {
					t.Errorf("stored updated_at %s, returned %s", found.UpdatedAt, got.UpdatedAt)
				}
				found.CreatedAt, found.UpdatedAt = got.CreatedAt, got.UpdatedAt
				if found != got || found.AppID != tt.in.AppID || found.APIBaseURL != tt.wantURL || found.HasPrivateKey != (tt.in.AppID != "") {
					t.Errorf("stored %+v, returned %+v; want app id %q, API %q", found, got, tt.in.AppID, tt.wantURL)
				}
				opened, err := db.AppPrivateKey(ctx, found)
				if tt.in.AppID == "" {
					if !errors.Is(err, store.ErrNotFound) {
						t.Errorf("AppPrivateKey of an integration without a key: %v, want ErrNotFound", err)
					}
					return
				}
				if err != nil || !opened.Equal(key) {
					t.Errorf("AppPrivateKey = %v, want the key given", err)
				}
			})
		}
	})
}

// TestAppPrivateKeyBoundToItsIntegration moves sealed values between rows and columns: none opens.
func TestAppPrivateKeyBoundToItsIntegration(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		db := storetest.Open(t, b)
		pemData := providertest.PKCS8PEM(t, providertest.AppKey(t))
		one, err := db.CreateIntegration(ctx, store.NewIntegration{Environment: "dev", UniqueKey: "one", Provider: "p", AuthMode: "APP",
			AppID: "1", PrivateKey: pemData, ClientID: "id", ClientSecret: "client-secret"})
		if err != nil {
			t.Fatal(err)
		}
		two, err := db.CreateIntegration(ctx, store.NewIntegration{Environment: "dev", UniqueKey: "two", Provider: "p", AuthMode: "APP",
			AppID: "2", PrivateKey: pemData})
		if err != nil {
			t.Fatal(err)
		}
		sqlDB, err := db.SQL()
		if err != nil {
			t.Fatal(err)
		}
		exec := func(q string, args ...any) {
			t.Helper()
			if db.Dialect() == store.DialectPostgres {
				q = strings.Replace(strings.Replace(q, "?", "$1", 1), "?", "$2", 1)
			}
			if _, err := sqlDB.ExecContext(ctx, q, args...); err != nil {
				t.Fatal(err)
			}
		}
		exec("UPDATE integrations SET private_key = (SELECT private_key FROM integrations WHERE id = ?) WHERE id = ?", one.ID, two.ID)
		if _, err := db.AppPrivateKey(ctx, two); err == nil {
			t.Error("integration two opens the private key of integration one")
		}
		exec("UPDATE integrations SET private_key = client_secret WHERE id = ?", one.ID)
		if _, err := db.AppPrivateKey(ctx, one); err == nil {
			t.Error("the client secret opens as the private key")
		}
	})
}

func TestRekeyAppPrivateKeys(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		keyA, keyB := rekeyKeys()
		dbURL := b.NewURL(t)
		key := providertest.AppKey(t)
		withA := openWithKeys(t, dbURL, keyA)
		for _, in := range []store.NewIntegration{
			{Environment: "dev", UniqueKey: "app", Provider: "github-app", AuthMode: "APP", AppID: "1", PrivateKey: providertest.PKCS1PEM(key)},
			{Environment: "dev", UniqueKey: "app-cc", Provider: "github-app", AuthMode: "APP", AppID: "2", PrivateKey: providertest.PKCS1PEM(key),
				ClientID: "id", ClientSecret: "client-secret"},
		} {
			if _, err := withA.CreateIntegration(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
		got, err := openWithKeys(t, dbURL, keyB+","+keyA).Rekey(ctx, 1, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := (store.RekeyProgress{KeyID: "b", Integrations: store.RekeyCount{Total: 3, Done: 3}}); got != want {
			t.Errorf("rekey = %+v, want %+v", got, want)
		}
		onlyB := openWithKeys(t, dbURL, keyB)
		list, err := onlyB.ListIntegrations(ctx, "dev")
		if err != nil || len(list) != 2 {
			t.Fatalf("integrations: %v, %v", list, err)
		}
		for _, in := range list {
			opened, err := onlyB.AppPrivateKey(ctx, in)
			if err != nil || !opened.Equal(key) {
				t.Errorf("private key of %s after rekey: %v", in.UniqueKey, err)
			}
		}
	})
}

func TestUpsertConnectionMergeConfig(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		db := storetest.Open(t, b)
		in := newIntegration(t, db, "dev", "github", "OAUTH2")
		upsert := func(config string, merge bool) store.Connection {
			t.Helper()
			c, err := db.UpsertConnection(ctx, store.UpsertConnection{
				EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: "c",
				Credentials: json.RawMessage(`{}`), ConnectionConfig: json.RawMessage(config), MergeConnectionConfig: merge,
			})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		steps := []struct {
			config string
			merge  bool
			want   string
		}{
			{`{"a":"1","b":"1"}`, true, `{"a":"1","b":"1"}`}, // an insert stores it as is
			{`{"b":"2","c":"2"}`, true, `{"a":"1","b":"2","c":"2"}`},
			{`{"d":"3"}`, false, `{"d":"3"}`},
			{`{"d":"4","n":1.5}`, true, `{"d":"4","n":1.5}`},
		}
		for _, s := range steps {
			got := upsert(s.config, s.merge)
			var g, w any
			_ = json.Unmarshal(got.ConnectionConfig, &g)
			_ = json.Unmarshal([]byte(s.want), &w)
			gb, _ := json.Marshal(g)
			wb, _ := json.Marshal(w)
			if string(gb) != string(wb) {
				t.Errorf("after %s (merge %v): connection_config %s, want %s", s.config, s.merge, got.ConnectionConfig, s.want)
			}
		}
	})
}
