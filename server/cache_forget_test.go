package server

import (
	"context"
	"testing"
	"time"
)

// TestCacheForget: forget drops an entry at once, and a load that began before it does not bring
// the old value back.
func TestCacheForget(t *testing.T) {
	now := time.Now()
	version := 1
	started, release := make(chan struct{}), make(chan struct{})
	blocking := false
	c := newTTLCache(time.Minute, func() time.Time { return now }, func(_ context.Context, _ string) (int, error) {
		v := version
		if blocking {
			close(started)
			<-release
		}
		return v, nil
	})
	ctx := context.Background()
	if v, _ := c.get(ctx, "k"); v != 1 {
		t.Fatalf("first get %d", v)
	}
	version = 2
	if v, _ := c.get(ctx, "k"); v != 1 {
		t.Fatalf("cached get %d, want 1 within the TTL", v)
	}
	c.forget("k")
	if v, _ := c.get(ctx, "k"); v != 2 {
		t.Fatalf("get after forget %d, want 2", v)
	}

	// A load of version 2 in flight while version 3 is written and forgotten.
	c.forget("k")
	blocking = true
	done := make(chan int)
	go func() {
		v, _ := c.get(ctx, "k")
		done <- v
	}()
	<-started
	version = 3
	c.forget("k")
	close(release)
	if v := <-done; v != 2 {
		t.Fatalf("in-flight get %d, want the 2 it loaded", v)
	}
	blocking = false
	if v, _ := c.get(ctx, "k"); v != 3 {
		t.Fatalf("get after the racing forget %d, want 3: the stale load was cached", v)
	}
}
