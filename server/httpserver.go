package server

import (
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// HTTPLimits are the limits of the HTTP server in front of the API, against clients that hold
// connections open.
type HTTPLimits struct {
	// ReadHeaderTimeout bounds reading a request's headers. Default 10 s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included, so that a body sent a byte at
	// a time cannot hold a connection. Default 30 s.
	ReadTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends no new request. Default 60 s.
	IdleTimeout time.Duration
	// MaxConnections bounds the connections served at once; more wait to be accepted.
	// Default DefaultMaxConnections.
	MaxConnections int
}

// DefaultMaxConnections is the default of HTTPLimits.MaxConnections.
const DefaultMaxConnections = 1024

// HTTPServer is an http.Server with HTTPLimits, as `credport serve` runs it.
type HTTPServer struct {
	*http.Server
	maxConns int
}

// NewHTTPServer serves h within lim, zero fields taking their defaults.
func NewHTTPServer(h http.Handler, lim HTTPLimits) *HTTPServer {
	if lim.ReadHeaderTimeout <= 0 {
		lim.ReadHeaderTimeout = 10 * time.Second
	}
	if lim.ReadTimeout <= 0 {
		lim.ReadTimeout = 30 * time.Second
	}
	if lim.IdleTimeout <= 0 {
		lim.IdleTimeout = 60 * time.Second
	}
	if lim.MaxConnections <= 0 {
		lim.MaxConnections = DefaultMaxConnections
	}
	return &HTTPServer{
		Server: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: lim.ReadHeaderTimeout,
			ReadTimeout:       lim.ReadTimeout,
			IdleTimeout:       lim.IdleTimeout,
		},
		maxConns: lim.MaxConnections,
	}
}

// Serve serves the connections of ln, at most MaxConnections at once.
func (s *HTTPServer) Serve(ln net.Listener) error {
	return s.Server.Serve(netutil.LimitListener(ln, s.maxConns))
}
