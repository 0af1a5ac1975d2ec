package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// TestSQLiteFilesPrivate: the database file and its -wal and -shm files are made readable by
// their owner only, like the key file, whatever the umask.
func TestSQLiteFilesPrivate(t *testing.T) {
	for _, umask := range []int{0o022, 0o002, 0} {
		t.Run(fmt.Sprintf("umask %03o", umask), func(t *testing.T) {
			old := syscall.Umask(umask)
			defer syscall.Umask(old)
			path := filepath.Join(t.TempDir(), "credport.db")
			db := storetest.OpenURL(t, path)
			in, err := db.CreateIntegration(context.Background(), store.NewIntegration{Environment: "dev", UniqueKey: "github",
				Provider: "github", AuthMode: "OAUTH2", ClientID: "id", ClientSecret: "secret"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.UpsertConnection(context.Background(), store.UpsertConnection{EnvironmentID: in.EnvironmentID,
				Integration: in, ConnectionID: "c1", Credentials: json.RawMessage(`{"type":"API_KEY","api_key":"k"}`)}); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				info, err := os.Stat(p)
				if err != nil {
					t.Fatalf("%s: %v", filepath.Base(p), err)
				}
				if perm := info.Mode().Perm(); perm != 0o600 {
					t.Errorf("%s: mode %v, want 0600", filepath.Base(p), perm)
				}
			}
		})
	}
}
