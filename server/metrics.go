package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
)

// metrics are the API's own Prometheus collectors. Every label value comes from a closed set,
// never from the request as sent: a caller must not be able to mint time series.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	imports  *prometheus.CounterVec
	// routes are the route templates registered on the router; any other path is unmatchedRoute.
	routes map[string]bool
}

// unmatchedRoute labels every request whose path matches no route; otherMethod, every method
// that is not a standard one.
const (
	unmatchedRoute = "unmatched"
	otherMethod    = "OTHER"
)

// knownMethods are the request methods that label a metric as themselves.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
	http.MethodConnect: true, http.MethodTrace: true,
}

// methodLabel is method when it is a standard one, else otherMethod.
func methodLabel(method string) string {
	if knownMethods[method] {
		return method
	}
	return otherMethod
}

// routeLabel is the route template Echo matched when it is one of routes, else unmatchedRoute.
func (m *metrics) routeLabel(route string) string {
	if m.routes[route] {
		return route
	}
	return unmatchedRoute
}

// statusLabel is the status code as three digits; a status outside 100-599 cannot be written,
// and is counted as 0.
func statusLabel(status int) string {
	if status < 100 || status > 599 {
		return "0"
	}
	return strconv.Itoa(status)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		routes: map[string]bool{},
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

// knowRoutes makes the route templates of e the closed set of route labels.
func (m *metrics) knowRoutes(e *echo.Echo) {
	for _, r := range e.Routes() {
		m.routes[r.Path] = true
	}
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
	// audit are the attributes the request's access line carries about what it changed: the
	// integration, connection id, credentials type and outcome of an import, delete or refresh.
	audit []any
}

// addAudit adds attributes, in slog's key-value pairs, to the request's access line. Only the
// request's own goroutine calls it.
func (n *requestNotes) addAudit(attrs ...any) { n.audit = append(n.audit, attrs...) }

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
		route, method, status := m.routeLabel(c.Path()), methodLabel(c.Request().Method), c.Response().Status
		m.requests.WithLabelValues(route, method, statusLabel(status)).Inc()
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
