// Package server is credport's HTTP API: Echo wiring, authentication, validation against
// openapi.yaml and the handlers that implement the generated strict interface.
package server

import (
	"cmp"
	"context"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
	"github.com/credport/credport/provider"
	"github.com/credport/credport/refresh"
	"github.com/credport/credport/store"
	"github.com/credport/credport/webhook"
)

// Store is what the API needs of the database.
type Store interface {
	FindAPIKeyBySecretHash(ctx context.Context, hash string) (store.APIKey, error)
	FindIntegration(ctx context.Context, envID int64, uniqueKey string) (store.Integration, error)
	UpsertConnection(ctx context.Context, in store.UpsertConnection) (store.Connection, error)
	GetConnection(ctx context.Context, in store.ReadConnection) (store.Connection, error)
	DeleteConnection(ctx context.Context, envID int64, providerConfigKey, connectionID string) error
	ListConnections(ctx context.Context, in store.ListConnections, each func(store.ListedConnection) error) error
	PatchConnection(ctx context.Context, in store.PatchConnection) error
	SetMetadata(ctx context.Context, envID int64, providerConfigKey string, connectionIDs []string, metadata json.RawMessage, merge bool) error
	Ping(ctx context.Context) error
	// AppPrivateKey opens the GitHub App private key of an integration, for APP imports.
	AppPrivateKey(ctx context.Context, in store.Integration) (*rsa.PrivateKey, error)
	// refresh.Store renews OAuth tokens.
	refresh.Store
}

// Config holds the API's dependencies and limits.
type Config struct {
	Store  Store
	Logger *slog.Logger
	// MaxBodyBytes bounds request bodies, and each item of a batch; larger ones get 413.
	// Default 1 MiB.
	MaxBodyBytes int64
	// MaxInflightBodyBytes bounds the request body bytes read, parsed and handled at once; a
	// request counts its Content-Length (MaxBodyBytes when it sends none), then a share for each
	// JSON value of its body. A request that cannot get its share within BodyBudgetWait answers
	// 503 server_overloaded. Default 8 MiB.
	MaxInflightBodyBytes int64
	// BodyBudgetWait is how long a request waits for its share of MaxInflightBodyBytes.
	// Default 250 ms.
	BodyBudgetWait time.Duration
	// MaxBatchBodyBytes bounds the body of POST /connections/batch instead; larger ones get 413.
	// Default 16 MiB.
	MaxBatchBodyBytes int64
	// KeyCacheTTL is how long a resolved API key or integration is trusted before it is looked up
	// again, and so how long a revoked key may still work. Default 2 s.
	KeyCacheTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// After is the background refresh's timer: its channel delivers once d has passed. Default
	// time.After; tests deliver the ticks themselves.
	After func(d time.Duration) <-chan time.Time
	// Registry receives the API's metrics and is what GET /metrics exposes. Default: a registry
	// with the Go runtime and process collectors.
	Registry *prometheus.Registry
	// MetricsElsewhere is set when another listener serves the metrics; GET /metrics then answers
	// 404 on the API address.
	MetricsElsewhere bool
	// RateLimit is each API key's sustained requests per second; 0 means no limit.
	RateLimit float64
	// RequestTimeout bounds the database work of one request; past it the request answers 503.
	// Default 4 s, so that a lost database is reported within 5 s. A call to a provider is not
	// database work: the database work after it gets a deadline of its own.
	RequestTimeout time.Duration
	// ProviderClient makes the calls to providers: GitHub, to mint the installation tokens of
	// GitHub App imports. Default: a client that follows no redirect.
	ProviderClient *http.Client
	// ProviderTimeout bounds one call to a provider; past it the request answers 502. Default 10 s.
	ProviderTimeout time.Duration
	// RefreshWindow: an OAuth token that expires within it is renewed before it is handed out.
	// Default 15 minutes.
	RefreshWindow time.Duration
	// RefreshBackoff: after a provider refused a refresh, reads that do not force one make no
	// new attempt within it. Default 30 s.
	RefreshBackoff time.Duration
	// Providers is the provider catalog POST /integrations takes auth modes from. Default: the
	// built-in one.
	Providers provider.Catalog
	// OutboundAllowPrivate lets webhook URL overrides name loopback and private addresses;
	// Resolver looks their hosts up (default: the system's).
	OutboundAllowPrivate bool
	Resolver             webhook.Resolver
}

// DefaultRequestTimeout is Config.RequestTimeout's default.
const DefaultRequestTimeout = 4 * time.Second

// Server implements the generated strict server interface.
type Server struct {
	store    Store
	log      *slog.Logger
	now      func() time.Time
	validate *contract.Validator
	// rules are what the handlers know of openapi.yaml beside validation.
	rules *contract.Rules
	// tags is openapi.yaml's Tags schema, which the merged tag set of an import must satisfy.
	tags             *openapi3.Schema
	gatherer         prometheus.Gatherer
	metricsElsewhere bool
	// specYAML is the contract as served by GET /openapi.yaml.
	specYAML []byte
	// integrations caches integrations by environment and unique key for KeyCacheTTL.
	integrations *ttlCache[integrationKey, store.Integration]
	// github mints the installation tokens of GitHub App imports; refresh renews OAuth tokens.
	github         *provider.Minter
	refresh        *refresh.Refresher
	requestTimeout time.Duration
	providers      provider.Catalog
	// importSchema is the body schema of POST /connections, which each batch item must satisfy.
	importSchema *openapi3.Schema
	maxBodyBytes int64
	// outboundAllowPrivate and resolver check webhook URL overrides.
	outboundAllowPrivate bool
	resolver             webhook.Resolver
}

var _ gen.StrictServerInterface = (*Server)(nil)

// API is the Echo instance that serves the API and the work it does in the background.
type API struct {
	*echo.Echo
	srv *Server
}

// RunRefresh renews, every interval, the OAuth tokens that will expire within the refresh
// window, until ctx ends.
func (a *API) RunRefresh(ctx context.Context, interval time.Duration) {
	a.srv.refresh.Run(ctx, interval, func(ctx context.Context, envID int64, uniqueKey string) (store.Integration, error) {
		return a.srv.integrations.get(ctx, integrationKey{envID, uniqueKey})
	})
}

// New builds the Echo instance that serves the API, the same one the tests drive.
func New(cfg Config) (*echo.Echo, error) {
	api, err := NewAPI(cfg)
	if err != nil {
		return nil, err
	}
	return api.Echo, nil
}

// NewAPI builds the API: New's Echo instance, with its background work.
func NewAPI(cfg Config) (*API, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxInflightBodyBytes <= 0 {
		cfg.MaxInflightBodyBytes = DefaultMaxInflightBodyBytes
	}
	if cfg.BodyBudgetWait <= 0 {
		cfg.BodyBudgetWait = 250 * time.Millisecond
	}
	if cfg.MaxBatchBodyBytes <= 0 {
		cfg.MaxBatchBodyBytes = 16 << 20
	}
	if cfg.KeyCacheTTL <= 0 {
		cfg.KeyCacheTTL = 2 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.ProviderClient == nil {
		cfg.ProviderClient = provider.NewHTTPClient()
	}
	if cfg.ProviderTimeout <= 0 {
		cfg.ProviderTimeout = 10 * time.Second
	}
	if cfg.RefreshWindow <= 0 {
		cfg.RefreshWindow = 15 * time.Minute
	}
	if cfg.RefreshBackoff <= 0 {
		cfg.RefreshBackoff = 30 * time.Second
	}
	if cfg.Providers == nil {
		builtin, err := provider.Builtin()
		if err != nil {
			return nil, err
		}
		cfg.Providers = builtin
	}
	spec, err := contract.Load()
	if err != nil {
		return nil, err
	}
	spec.Servers = nil // match requests on any host
	if err := contract.CheckSecuritySchemes(spec); err != nil {
		return nil, err
	}
	rules, err := contract.NewRules(spec)
	if err != nil {
		return nil, err
	}
	for _, s := range []string{scopeReadCredentials, scopeReadIntegrationCredentials} {
		if !rules.ValidScope(s) {
			return nil, fmt.Errorf("openapi.yaml declares no scope %s, which the handlers check", s)
		}
	}
	router, err := contract.NewRouter(spec)
	if err != nil {
		return nil, err
	}
	auth := newAuthenticator(cfg.Store, cfg.KeyCacheTTL, cfg.Now)
	v := &validation{
		contract: contract.NewValidator(spec),
		budget:   newBodyBudget(cfg.MaxInflightBodyBytes, cfg.MaxBodyBytes, cfg.BodyBudgetWait),
	}
	tagsSchema := spec.Components.Schemas["Tags"]
	if tagsSchema == nil || tagsSchema.Value == nil {
		return nil, fmt.Errorf("openapi.yaml declares no Tags schema")
	}
	if cfg.Registry == nil {
		cfg.Registry = DefaultRegistry()
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	refresher, err := refresh.New(refresh.Config{
		Store:  cfg.Store,
		Client: &provider.Client{HTTP: cfg.ProviderClient, Timeout: cfg.ProviderTimeout, Now: cfg.Now},
		Window: cfg.RefreshWindow, Backoff: cfg.RefreshBackoff, DBTimeout: cfg.RequestTimeout,
		Now: cfg.Now, After: cfg.After, Registry: cfg.Registry, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	srv := &Server{
		store: cfg.Store, log: cfg.Logger, now: cfg.Now, validate: v.contract, rules: rules, tags: tagsSchema.Value,
		gatherer: cfg.Registry, metricsElsewhere: cfg.MetricsElsewhere, specYAML: contract.YAML(),
		github:         &provider.Minter{HTTP: cfg.ProviderClient, Timeout: cfg.ProviderTimeout, Now: cfg.Now, Log: cfg.Logger},
		refresh:        refresher,
		requestTimeout: cfg.RequestTimeout, providers: cfg.Providers,
		maxBodyBytes:         cfg.MaxBodyBytes,
		outboundAllowPrivate: cfg.OutboundAllowPrivate, resolver: cfg.Resolver,
	}
	if srv.importSchema, _, err = contract.BodySchema(spec, http.MethodPost, "/connections"); err != nil {
		return nil, err
	}
	srv.integrations = newTTLCache(cfg.KeyCacheTTL, cfg.Now, func(ctx context.Context, k integrationKey) (store.Integration, error) {
		return cfg.Store.FindIntegration(ctx, k.envID, k.uniqueKey)
	})

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = HTTPErrorHandler(cfg.Logger)
	// Order matters: the request is routed and authenticated, then rate-limited, before anything
	// reads its body; the body is then bounded in size and in bytes in flight, and validated.
	mws := []echo.MiddlewareFunc{
		requestID,
		trackBody,
		accessLog(cfg.Logger),
		m.middleware,
		middleware.Recover(),
		requestTimeout(cfg.RequestTimeout),
		middleware.SecureWithConfig(middleware.SecureConfig{
			XSSProtection:         "0",
			ContentTypeNosniff:    "nosniff",
			XFrameOptions:         "DENY",
			ContentSecurityPolicy: "default-src 'none'; frame-ancestors 'none'",
			ReferrerPolicy:        "strict-origin",
		}),
		auth.guard(router),
	}
	if cfg.RateLimit > 0 {
		mws = append(mws, rateLimit(cfg.RateLimit, cfg.Now))
	}
	mws = append(mws,
		middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{
			Limit: fmt.Sprintf("%dB", cfg.MaxBodyBytes), Skipper: isBatch,
		}),
		middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{
			Limit: fmt.Sprintf("%dB", cfg.MaxBatchBodyBytes), Skipper: func(c echo.Context) bool { return !isBatch(c) },
		}),
		v.middleware,
	)
	e.Use(mws...)
	gen.RegisterHandlers(e, gen.NewStrictHandler(srv, nil))
	m.knowRoutes(e)
	return &API{Echo: e, srv: srv}, nil
}

// DefaultMaxInflightBodyBytes is the default of Config.MaxInflightBodyBytes: eight bodies of the
// default size limit.
const DefaultMaxInflightBodyBytes = 8 << 20

// integrationKey names an integration within its environment.
type integrationKey struct {
	envID     int64
	uniqueKey string
}

// requestTimeout gives every request a deadline that its database calls honour.
func requestTimeout(d time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			ctx, cancel := context.WithTimeout(context.WithValue(c.Request().Context(), untimedKey{}, c.Request().Context()), d)
			defer cancel()
			c.SetRequest(c.Request().WithContext(ctx))
			return next(c)
		}
	}
}

// auditAttrs are the access line's attributes about what the request changed, so that one line
// a request is the audit trail too. An import that was refused carries its type and outcome; a
// batch carries the counts of its items' outcomes, not one line an item.
func auditAttrs(n *requestNotes, v middleware.RequestLoggerValues) []any {
	attrs := n.audit
	if v.Method == http.MethodPost && v.RoutePath == "/connections" && v.Status >= 400 && v.Status < 500 {
		attrs = append(attrs, "type", cmp.Or(n.credentialType, "unknown"), "outcome", "rejected")
	}
	if n.batchImports != nil {
		counts := map[string]int{}
		for _, in := range n.batchImports {
			counts[cmp.Or(in.outcome, "failed")]++
		}
		attrs = append(attrs, "items", len(n.batchImports), "created", counts["created"], "updated", counts["updated"],
			"rejected", counts["rejected"], "failed", counts["failed"])
	}
	return attrs
}

// accessLog writes one line per request. It never logs headers or bodies, which carry secrets.
func accessLog(log *slog.Logger) echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus:    true,
		LogMethod:    true,
		LogRoutePath: true,
		LogLatency:   true,
		LogRequestID: true,
		HandleError:  true, // let the error handler write first, so the line has the real status
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			attrs := []any{"request_id", v.RequestID, "method", v.Method, "route", v.RoutePath,
				"status", v.Status, "duration", v.Latency}
			if key, ok := principal(c.Request().Context()); ok {
				attrs = append(attrs, "environment", key.Environment, "key_id", key.ID)
			}
			attrs = append(attrs, auditAttrs(notes(c.Request().Context()), v)...)
			log.InfoContext(c.Request().Context(), "request", attrs...)
			return nil
		},
	})
}
