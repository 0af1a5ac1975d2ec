package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// TestForeignKeyViolationIsParentNotFound: a connection written for an integration deleted
// meanwhile comes back as ErrParentNotFound, an ErrNotFound, not as the driver's error.
func TestForeignKeyViolationIsParentNotFound(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		db := storetest.Open(t, b)
		in := newIntegration(t, db, "dev", "github", "OAUTH2")
		if _, err := db.DeleteIntegration(ctx, in.EnvironmentID, in.UniqueKey); err != nil {
			t.Fatal(err)
		}
		_, err := db.UpsertConnection(ctx, store.UpsertConnection{
			EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: "c1",
			Credentials: json.RawMessage(`{"type":"OAUTH2","access_token":"one"}`),
		})
		if !errors.Is(err, store.ErrParentNotFound) || !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("upsert for a deleted integration: %v, want ErrParentNotFound", err)
		}
	})
}

// TestUnreachableDatabaseIsUnavailable: with the database gone, reads through GORM and through
// the statements outside its error path alike come back as ErrUnavailable.
func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	ctx := context.Background()
	proxy, url := storetest.NewProxy(t, storetest.Postgres.NewURL(t))
	db := storetest.OpenURL(t, url)
	in := newIntegration(t, db, "dev", "github", "OAUTH2")
	proxy.Cut()

	reads := []struct {
		name string
		read func() error
	}{
		{"find integration", func() error {
			_, err := db.FindIntegration(ctx, in.EnvironmentID, in.UniqueKey)
			return err
		}},
		{"get connection", func() error {
			_, err := db.GetConnection(ctx, store.ReadConnection{EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: "c1"})
			return err
		}},
		{"list connections", func() error {
			return db.ListConnections(ctx, store.ListConnections{EnvironmentID: in.EnvironmentID},
				func(store.ListedConnection) error { return nil })
		}},
	}
	for _, r := range reads {
		t.Run(r.name, func(t *testing.T) {
			if err := r.read(); !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("%v, want ErrUnavailable", err)
			}
		})
	}
}
