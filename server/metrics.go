package server

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
)

// metrics are the API's own Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	imports  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credport_http_requests_total",
			Help: "HTTP requests by route template, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "credport_http_request_duration_seconds",
			Help:    "HTTP request latency by route template and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		imports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credport_imports_total",
			Help: "Imports (POST /connections, and each item of POST /connections/batch) by outcome (created, updated, rejected) and credentials type.",
		}, []string{"outcome", "type"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.imports} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// DefaultRegistry is a registry with the Go runtime and process collectors, to which the API adds
// its own.
func DefaultRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// requestNotes is what a request's handlers learn that its metrics need.
type requestNotes struct {
	credentialType string
	created        *bool
	// batchImports are the outcomes of the items of a batch.
	batchImports []importNote
}

// importNote is the outcome (created, updated, rejected or "" for a server error) of one import
// and its credentials type.
type importNote struct{ outcome, credentialType string }

type requestNotesKey struct{}

func notes(ctx context.Context) *requestNotes {
	n, _ := ctx.Value(requestNotesKey{}).(*requestNotes)
	if n == nil {
		return &requestNotes{} // not under the middleware: notes go nowhere
	}
	return n
}

// middleware counts and times every request by its route template, never its raw path.
func (m *metrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		n := &requestNotes{}
		c.SetRequest(c.Request().WithContext(context.WithValue(c.Request().Context(), requestNotesKey{}, n)))
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // write the error response now, so its status is the one counted
		}
		route, method, status := c.Path(), c.Request().Method, c.Response().Status
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
		m.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
		if route == "/connections" && method == "POST" {
			typ := n.credentialType
			if typ == "" {
				typ = "unknown"
			}
			switch {
			case status == 200 && n.created != nil && *n.created:
				m.imports.WithLabelValues("created", typ).Inc()
			case status == 200:
				m.imports.WithLabelValues("updated", typ).Inc()
			case status >= 400 && status < 500:
				m.imports.WithLabelValues("rejected", typ).Inc()
			}
		}
		for _, in := range n.batchImports {
			if in.outcome != "" {
				m.imports.WithLabelValues(in.outcome, in.credentialType).Inc()
			}
		}
		return nil
	}
}

// exposition renders every metric of g in the Prometheus text format.
func exposition(g prometheus.Gatherer) (string, error) {
	families, err := g.Gather()
	if err != nil {
		return "", fmt.Errorf("gather metrics: %w", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return "", fmt.Errorf("encode metrics: %w", err)
		}
	}
	return buf.String(), nil
}

// refreshCounter counts token refreshes by trigger (read, background) and outcome: renewed,
// refused, unavailable, blocked (backing off or exhausted), shared (another refresh's result was
// used), skipped or error.
type refreshCounter struct{ vec *prometheus.CounterVec }

func newRefreshCounter(reg prometheus.Registerer) (refreshCounter, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credport_token_refreshes_total",
		Help: "Token refreshes by trigger (read, background) and outcome.",
	}, []string{"trigger", "outcome"})
	if err := reg.Register(vec); err != nil {
		return refreshCounter{}, fmt.Errorf("register metrics: %w", err)
	}
	return refreshCounter{vec: vec}, nil
}

func (c refreshCounter) inc(trigger, outcome string) { c.vec.WithLabelValues(trigger, outcome).Inc() }
