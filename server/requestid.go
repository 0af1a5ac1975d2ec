package server

import (
	"crypto/rand"
	"regexp"

	"github.com/labstack/echo/v4"
)

// requestIDPattern is what a client-supplied X-Request-Id must look like to be kept.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestID keeps a well-formed X-Request-Id from the request, otherwise makes one, and returns
// it on every response.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if !requestIDPattern.MatchString(id) {
			id = rand.Text()
			c.Request().Header.Set(echo.HeaderXRequestID, id)
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}
