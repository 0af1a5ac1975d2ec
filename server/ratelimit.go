package server

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/time/rate"
)

// rateLimit allows each API key perSecond requests a second, with a burst of as many, and answers
// 429 with Retry-After beyond that. Unauthenticated requests are not limited here.
func rateLimit(perSecond float64, now func() time.Time) echo.MiddlewareFunc {
	retryAfter := max(1, int(math.Ceil(1/perSecond)))
	return middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Skipper: func(c echo.Context) bool {
			_, ok := principal(c.Request().Context())
			return !ok
		},
		IdentifierExtractor: func(c echo.Context) (string, error) {
			key, _ := principal(c.Request().Context())
			return strconv.FormatInt(key.ID, 10), nil
		},
		Store: newKeyLimiters(perSecond, now),
		DenyHandler: func(echo.Context, string, error) error {
			return errRateLimited(retryAfter)
		},
	})
}

// keyLimiters is a token bucket per API key on the server's clock, so that the limit is exact in
// tests as in production. Buckets idle for longer than idleAfter are dropped.
type keyLimiters struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	limiter  *rate.Limiter
	lastSeen time.Time
}

const idleAfter = 3 * time.Minute

func newKeyLimiters(perSecond float64, now func() time.Time) *keyLimiters {
	return &keyLimiters{
		limit:   rate.Limit(perSecond),
		burst:   max(1, int(math.Ceil(perSecond))),
		now:     now,
		buckets: map[string]*bucket{},
	}
}

// Allow implements middleware.RateLimiterStore.
func (k *keyLimiters) Allow(id string) (bool, error) {
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if now.Sub(k.swept) > idleAfter {
		for key, b := range k.buckets {
			if now.Sub(b.lastSeen) > idleAfter {
				delete(k.buckets, key)
			}
		}
		k.swept = now
	}
	b, ok := k.buckets[id]
	if !ok {
		b = &bucket{limiter: rate.NewLimiter(k.limit, k.burst)}
		k.buckets[id] = b
	}
	b.lastSeen = now
	return b.limiter.AllowN(now, 1), nil
}
