package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/labstack/echo/v4"

	"github.com/credport/credport/store"
)

// principalKey holds the authenticated API key, in the echo context and then the request context.
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

// authenticate is the kin-openapi AuthenticationFunc: it checks the bearer secret and the scopes
// the operation declares in openapi.yaml, and leaves the key on the echo context.
func (a *authenticator) authenticate(ctx context.Context, input *openapi3filter.AuthenticationInput) error {
	c, ok := ctx.Value(echoContextKey{}).(echo.Context)
	if !ok {
		return errors.New("authenticate: no echo context")
	}
	header := c.Request().Header.Get(echo.HeaderAuthorization)
	if header == "" {
		return newError(http.StatusUnauthorized, "missing_auth_header", "Authentication failed. The request is missing the Authorization header.")
	}
	scheme, secret, found := strings.Cut(header, " ")
	secret = strings.TrimSpace(secret)
	if !found || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return newError(http.StatusUnauthorized, "malformed_auth_header", "Authentication failed. The provided Authorization header is malformed.")
	}
	key, err := a.lookup(ctx, secret)
	if errors.Is(err, store.ErrNotFound) {
		return newError(http.StatusUnauthorized, "unknown_account", "Authentication failed. The provided secret key is unknown or revoked.")
	}
	if err != nil {
		return fmt.Errorf("authenticate: %w", err)
	}
	if len(input.Scopes) > 0 && !anyGranted(key.Scopes, input.Scopes) {
		return newError(http.StatusForbidden, "forbidden", missingScopeMessage(operationScopes(input)))
	}
	c.Set(principalKeyName, key)
	return nil
}

const principalKeyName = "credport.principal"

func anyGranted(held, required []string) bool {
	for _, r := range required {
		if grants(held, r) {
			return true
		}
	}
	return false
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
