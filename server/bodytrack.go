package server

import (
	"errors"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"
)

// trackedBody records whether a request body was read to its end.
type trackedBody struct {
	io.ReadCloser
	done bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.done = true
	}
	return n, err
}

const trackedBodyKey = "credport.body"

// trackBody lets the error handler tell a request refused before its body was read.
func trackBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength != 0 && req.Body != nil && req.Body != http.NoBody {
			tb := &trackedBody{ReadCloser: req.Body}
			req.Body = tb
			c.Set(trackedBodyKey, tb)
		}
		return next(c)
	}
}

// bodyUnread tells whether the request of c has a body that was not read to its end.
func bodyUnread(c echo.Context) bool {
	tb, ok := c.Get(trackedBodyKey).(*trackedBody)
	return ok && !tb.done
}
