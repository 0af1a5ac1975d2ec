package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/pressly/goose/v3"

	"github.com/credport/credport/provider/providertest"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// TestCheckKeys: a key ring that lacks a key some stored value was sealed with is named missing,
// whichever column holds the value, and a key id whose values are all gone stops counting.
func TestCheckKeys(t *testing.T) {
	type step struct {
		name string
		// ring is the key ring the step opens the database with, from the keys a, b and c.
		ring func(a, b, c string) string
		// act runs before the check, on the database opened with ring.
		act func(t *testing.T, db *store.DB, f rekeyFixture)
		// wantListed is what MissingKeyIDs answers, wantMissing what CheckKeys names.
		wantListed, wantMissing []string
	}
	rekey := func(t *testing.T, db *store.DB, _ rekeyFixture) {
		if _, err := db.Rekey(context.Background(), 100, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		// seed stores values sealed with key a.
		seed  func(t *testing.T, db *store.DB) rekeyFixture
		steps []step
	}{
		{
			name: "connections and integrations",
			seed: seedRekey,
			steps: []step{
				{name: "the key that sealed them", ring: func(a, b, c string) string { return a }},
				{name: "another key alone", ring: func(a, b, c string) string { return b },
					wantListed: []string{"a"}, wantMissing: []string{"a"}},
				{name: "rotated: new key first, old key after", ring: func(a, b, c string) string { return b + "," + a }, act: rekey},
				{name: "after rekey, the old key alone", ring: func(a, b, c string) string { return a },
					wantListed: []string{"b"}, wantMissing: []string{"b"}},
				// The check before removed a from the list: no value needs it any more.
				{name: "after rekey, the new key alone", ring: func(a, b, c string) string { return b }},
				{name: "a third key seals an import", ring: func(a, b, c string) string { return c + "," + b }, act: func(t *testing.T, db *store.DB, f rekeyFixture) {
					importCredentials(t, db, f.integration["dev/github"], "c9", `{"type":"OAUTH2","access_token":"c9"}`)
				}},
				{name: "a fourth server without it", ring: func(a, b, c string) string { return b },
					wantListed: []string{"c"}, wantMissing: []string{"c"}},
				{name: "the import is deleted", ring: func(a, b, c string) string { return c + "," + b }, act: func(t *testing.T, db *store.DB, f rekeyFixture) {
					if err := db.DeleteConnection(context.Background(), f.integration["dev/github"].EnvironmentID, "github", "c9"); err != nil {
						t.Fatal(err)
					}
				}},
				{name: "then the server without it starts", ring: func(a, b, c string) string { return b },
					wantListed: []string{"c"}},
			},
		},
		{
			name: "a client secret only",
			seed: func(t *testing.T, db *store.DB) rekeyFixture {
				if _, err := db.CreateIntegration(context.Background(), store.NewIntegration{Environment: "dev", UniqueKey: "github",
					Provider: "github", AuthMode: "OAUTH2", ClientID: "id", ClientSecret: "secret"}); err != nil {
					t.Fatal(err)
				}
				return rekeyFixture{}
			},
			steps: []step{
				{name: "another key alone", ring: func(a, b, c string) string { return b }, wantListed: []string{"a"}, wantMissing: []string{"a"}},
				{name: "both", ring: func(a, b, c string) string { return b + "," + a }},
			},
		},
		{
			name: "a GitHub App private key only",
			seed: func(t *testing.T, db *store.DB) rekeyFixture {
				if _, err := db.CreateIntegration(context.Background(), store.NewIntegration{Environment: "dev", UniqueKey: "app",
					Provider: "github-app", AuthMode: "APP", AppID: "1", PrivateKey: providertest.PKCS8PEM(t, providertest.AppKey(t))}); err != nil {
					t.Fatal(err)
				}
				return rekeyFixture{}
			},
			steps: []step{
				{name: "another key alone", ring: func(a, b, c string) string { return b }, wantListed: []string{"a"}, wantMissing: []string{"a"}},
			},
		},
		{
			name: "nothing sealed",
			seed: func(t *testing.T, db *store.DB) rekeyFixture {
				if _, err := db.CreateIntegration(context.Background(), store.NewIntegration{Environment: "dev", UniqueKey: "stripe",
					Provider: "stripe", AuthMode: "API_KEY"}); err != nil {
					t.Fatal(err)
				}
				return rekeyFixture{}
			},
			steps: []step{{name: "any key", ring: func(a, b, c string) string { return b }}},
		},
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				keyA, keyB := rekeyKeys()
				keyC := "c:" + store.NewKey()
				dbURL := b.NewURL(t)
				f := tt.seed(t, openWithKeys(t, dbURL, keyA))
				for _, st := range tt.steps {
					db := openWithKeys(t, dbURL, st.ring(keyA, keyB, keyC))
					if st.act != nil {
						st.act(t, db, f)
					}
					listed, err := db.MissingKeyIDs(context.Background())
					if err != nil || fmt.Sprint(listed) != fmt.Sprint(st.wantListed) {
						t.Errorf("%s: MissingKeyIDs = %v, %v; want %v", st.name, listed, err, st.wantListed)
					}
					err = db.CheckKeys(context.Background())
					var missing *store.MissingKeysError
					switch {
					case st.wantMissing == nil && err != nil:
						t.Errorf("%s: CheckKeys: %v, want nil", st.name, err)
					case st.wantMissing != nil && !errors.As(err, &missing):
						t.Errorf("%s: CheckKeys: %v, want the missing ids %v", st.name, err, st.wantMissing)
					case st.wantMissing != nil && fmt.Sprint(missing.Missing) != fmt.Sprint(st.wantMissing):
						t.Errorf("%s: CheckKeys names %v, want %v", st.name, missing.Missing, st.wantMissing)
					}
					if err := db.Close(); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	})
}

// TestSealingKeysListsExistingValues: migrating a database that holds sealed values from before
// sealing_keys lists their key ids, so the first start after the upgrade checks them too.
func TestSealingKeysListsExistingValues(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		keyA, keyB := rekeyKeys()
		dbURL := b.NewURL(t)
		db := openWithKeys(t, dbURL, keyA)
		seedRekey(t, db)
		sqlDB, err := db.SQL()
		if err != nil {
			t.Fatal(err)
		}
		gooseDialect := goose.DialectSQLite3
		if db.Dialect() == store.DialectPostgres {
			gooseDialect = goose.DialectPostgres
		}
		provider, err := goose.NewProvider(gooseDialect, sqlDB, os.DirFS(filepath.Join("migrations", string(db.Dialect()))))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := provider.DownTo(context.Background(), 6); err != nil {
			t.Fatalf("migrate down to 6: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		err = openWithKeys(t, dbURL, keyB).CheckKeys(context.Background()) // migrates up again
		var missing *store.MissingKeysError
		if !errors.As(err, &missing) || fmt.Sprint(missing.Missing) != "[a]" {
			t.Errorf("CheckKeys after the upgrade: %v, want key id a missing", err)
		}
	})
}
