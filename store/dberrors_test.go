package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"strings"
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

// TestReadOnlyPrimaryIsUnavailableAndRetired: a connection whose server became a standby (here,
// a session made read-only, as a demoted primary's are) answers a write with ErrUnavailable, and
// the pool then drops the connections it opened before, so that the next write succeeds on a new
// one instead of failing on the same stale connection.
func TestReadOnlyPrimaryIsUnavailableAndRetired(t *testing.T) {
	ctx := context.Background()
	db := storetest.OpenURL(t, storetest.Postgres.NewURL(t))
	in := newIntegration(t, db, "dev", "github", "OAUTH2")
	sqlDB, err := db.SQL()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(1)
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "SET default_transaction_read_only = on"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	upsert := func(id string) error {
		_, err := db.UpsertConnection(ctx, store.UpsertConnection{
			EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: id,
			Credentials: json.RawMessage(`{"type":"OAUTH2","access_token":"one"}`),
		})
		return err
	}
	if err := upsert("c1"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("write on a read-only connection: %v, want ErrUnavailable", err)
	}
	if err := upsert("c2"); err != nil {
		t.Fatalf("write after the read-only connection was retired: %v", err)
	}
}

// TestMultiHost tells a URL naming several hosts from one naming one.
func TestMultiHost(t *testing.T) {
	for _, tt := range []struct {
		url  string
		want bool
	}{
		{"postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write", true},
		{"postgres://u:p,w@h1:5432/db?options=a,b", false},
		{"postgresql://h1,h2/db", true},
		{"credport.db", false},
	} {
		if got := store.MultiHost(tt.url); got != tt.want {
			t.Errorf("MultiHost(%q) = %v, want %v", tt.url, got, tt.want)
		}
	}
}

// TestMultiHostURLFindsTheWritableHost: a URL naming a host that does not answer before the one
// that does opens the store on the second, as after a failover.
func TestMultiHostURLFindsTheWritableHost(t *testing.T) {
	u, err := url.Parse(storetest.Postgres.NewURL(t))
	if err != nil {
		t.Fatal(err)
	}
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close() // a port that refuses connections
	q := u.Query()
	q.Set("target_session_attrs", "read-write")
	u.RawQuery = q.Encode()
	multi := strings.Replace(u.String(), "://"+u.User.String()+"@"+u.Host, "://"+u.User.String()+"@"+deadAddr+","+u.Host, 1)
	if !store.MultiHost(multi) {
		t.Fatalf("%s does not name two hosts", multi)
	}
	db := storetest.OpenURL(t, multi)
	newIntegration(t, db, "dev", "github", "OAUTH2")
}
