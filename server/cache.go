package server

import (
	"context"
	"sync"
	"time"
)

// maxCacheEntries bounds a cache; past it the cache starts over.
const maxCacheEntries = 10000

// ttlCache remembers what the store answered for a short time, so that a busy client does not
// cost a database round trip per request for data that rarely changes. Only successful lookups
// are kept: something created a moment ago is found at once.
type ttlCache[K comparable, V any] struct {
	ttl  time.Duration
	now  func() time.Time
	load func(ctx context.Context, key K) (V, error)

	mu      sync.Mutex
	entries map[K]cacheEntry[V]
	// generation counts forget calls, so that a load that began before one does not bring back
	// what it removed.
	generation uint64
}

type cacheEntry[V any] struct {
	value   V
	expires time.Time
}

func newTTLCache[K comparable, V any](ttl time.Duration, now func() time.Time, load func(context.Context, K) (V, error)) *ttlCache[K, V] {
	return &ttlCache[K, V]{ttl: ttl, now: now, load: load, entries: map[K]cacheEntry[V]{}}
}

// get returns the cached value of key, loading it when absent or expired.
func (c *ttlCache[K, V]) get(ctx context.Context, key K) (V, error) {
	now := c.now()
	c.mu.Lock()
	entry, ok := c.entries[key]
	generation := c.generation
	c.mu.Unlock()
	if ok && now.Before(entry.expires) {
		return entry.value, nil
	}
	value, err := c.load(ctx, key)
	if err != nil {
		return value, err
	}
	c.mu.Lock()
	if c.generation != generation {
		c.mu.Unlock()
		return value, nil
	}
	if len(c.entries) >= maxCacheEntries {
		clear(c.entries)
	}
	c.entries[key] = cacheEntry[V]{value: value, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return value, nil
}

// forget drops key at once, so that the next get loads it again.
func (c *ttlCache[K, V]) forget(key K) {
	c.mu.Lock()
	delete(c.entries, key)
	c.generation++
	c.mu.Unlock()
}
