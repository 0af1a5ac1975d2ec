package server

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/time/rate"
)

// rateLimit allows each API key perSecond requests a second, with a burst of as many, and answers
// 429 with Retry-After beyond that. Unauthenticated requests are not limited here.
func rateLimit(perSecond float64) echo.MiddlewareFunc {
	burst := max(1, int(math.Ceil(perSecond)))
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
		Store: middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
			Rate: rate.Limit(perSecond), Burst: burst, ExpiresIn: 3 * time.Minute,
		}),
		DenyHandler: func(echo.Context, string, error) error {
			e := newError(http.StatusTooManyRequests, "too_many_requests", "Rate limit exceeded for this API key")
			e.RetryAfter = retryAfter
			return e
		},
	})
}
