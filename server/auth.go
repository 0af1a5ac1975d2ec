package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
	"github.com/credport/credport/store"
)

// principalKey holds the authenticated API key in the request context.
type principalKey struct{}

// principal is the API key behind the current request.
func principal(ctx context.Context) (store.APIKey, bool) {
	key, ok := ctx.Value(principalKey{}).(store.APIKey)
	return key, ok
}

// authenticator resolves bearer secrets to API keys through a short-lived cache: a revoked key
// stops working once its entry expires.
type authenticator struct {
	keys *ttlCache[string, store.APIKey]
}

func newAuthenticator(s Store, ttl time.Duration, now func() time.Time) *authenticator {
	return &authenticator{keys: newTTLCache(ttl, now, s.FindAPIKeyBySecretHash)}
}

// matchedOperation is the operation of openapi.yaml a request was routed to, found once by the
// guard and used again by the validator.
type matchedOperation struct {
	route  *routers.Route
	params map[string]string
}

const matchedOperationKey = "credport.operation"

// guard routes every request through openapi.yaml and authenticates it as its operation's
// security says, before anything reads the body: a request with no, a malformed or an unknown
// key, or a key without the scope, is refused without its body being read. A path the contract
// does not declare never reaches a handler, whatever Echo's router would make of it.
func (a *authenticator) guard(router routers.Router) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			route, params, err := router.FindRoute(req)
			if errors.Is(err, routers.ErrMethodNotAllowed) {
				return errMethodNotAllowed()
			}
			if err != nil {
				// Echo's router accepts paths the contract does not (a trailing slash, a dot
				// segment): they answer 404 here rather than reach a handler unauthenticated.
				return errNoRoute()
			}
			requirements := securityOf(route)
			if needsKey(requirements) {
				key, err := a.authenticate(req.Context(), req.Header.Get(echo.HeaderAuthorization), requirements)
				if err != nil {
					return err
				}
				req = req.WithContext(context.WithValue(req.Context(), principalKey{}, key))
				c.SetRequest(req)
			}
			c.Set(matchedOperationKey, matchedOperation{route: route, params: params})
			return next(c)
		}
	}
}

// securityOf is the security requirements of the operation of route: its own, else the
// document's.
func securityOf(route *routers.Route) openapi3.SecurityRequirements {
	if route.Operation.Security != nil {
		return *route.Operation.Security
	}
	return route.Spec.Security
}

// needsKey tells whether requirements ask for a key: `security: []` or an empty requirement
// lets anyone in.
func needsKey(requirements openapi3.SecurityRequirements) bool {
	if len(requirements) == 0 {
		return false
	}
	for _, r := range requirements {
		if len(r) == 0 {
			return false
		}
	}
	return true
}

// authenticate checks the bearer secret of header and that its key meets one of requirements.
// A requirement is met when the key holds one of its scopes (or it lists none); the 403 names
// every scope that would have done.
func (a *authenticator) authenticate(ctx context.Context, header string, requirements openapi3.SecurityRequirements) (store.APIKey, error) {
	if header == "" {
		return store.APIKey{}, apiError(gen.ErrorCodeMissingAuthHeader, "Authentication failed. The request is missing the Authorization header.")
	}
	scheme, secret, found := strings.Cut(header, " ")
	secret = strings.TrimSpace(secret)
	if !found || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return store.APIKey{}, apiError(gen.ErrorCodeMalformedAuthHeader, "Authentication failed. The provided Authorization header is malformed.")
	}
	key, err := a.lookup(ctx, secret)
	if errors.Is(err, store.ErrNotFound) {
		return store.APIKey{}, apiError(gen.ErrorCodeUnknownAccount, "Authentication failed. The provided secret key is unknown or revoked.")
	}
	if err != nil {
		return store.APIKey{}, fmt.Errorf("authenticate: %w", err)
	}
	var wanted []string
	for _, r := range requirements {
		scopes := r[contract.BearerScheme]
		if len(scopes) == 0 || contract.GrantsAny(key.Scopes, scopes) {
			return key, nil
		}
		for _, s := range scopes {
			if !slices.Contains(wanted, s) {
				wanted = append(wanted, s)
			}
		}
	}
	return store.APIKey{}, apiError(gen.ErrorCodeForbidden, missingScopeMessage(wanted))
}

// missingScopeMessage words a 403 the way the reference does.
func missingScopeMessage(required []string) string {
	if len(required) == 1 {
		return "Insufficient scope. Required: " + required[0]
	}
	return "Insufficient scope. Required one of: " + strings.Join(required, " or ")
}

func (a *authenticator) lookup(ctx context.Context, secret string) (store.APIKey, error) {
	hash := store.HashSecret(secret)
	key, err := a.keys.get(ctx, hash)
	if err != nil {
		return store.APIKey{}, err
	}
	// The database found the row by its hash; compare again in constant time so that nothing
	// about the stored hash depends on how the lookup compared strings.
	if subtle.ConstantTimeCompare([]byte(key.SecretHash), []byte(hash)) != 1 {
		return store.APIKey{}, store.ErrNotFound
	}
	return key, nil
}
