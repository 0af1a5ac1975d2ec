package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// clock is a test clock that only moves when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestRevokedKeyRefusedWithinFiveSeconds(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		db := storetest.Open(t, b)
		clk := &clock{now: time.Now()}
		e, err := server.New(server.Config{Store: db, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.CreateIntegration(ctx, store.NewIntegration{Environment: "dev", UniqueKey: "github", Provider: "github", AuthMode: "OAUTH2"}); err != nil {
			t.Fatal(err)
		}
		key, secret, err := db.CreateAPIKey(ctx, "dev", "ci", []string{contract.FullAccess})
		if err != nil {
			t.Fatal(err)
		}
		status := func() int {
			req := httptest.NewRequest(http.MethodPost, "/connections", strings.NewReader(validImport))
			req.Header.Set("Authorization", "Bearer "+secret)
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			return rec.Code
		}
		if got := status(); got != http.StatusOK {
			t.Fatalf("before revocation: status %d, want 200", got)
		}
		if err := db.RevokeAPIKey(ctx, "dev", key.ID); err != nil {
			t.Fatal(err)
		}
		clk.Add(5 * time.Second)
		if got := status(); got != http.StatusUnauthorized {
			t.Fatalf("5 s after revocation: status %d, want 401", got)
		}
	})
}
