package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/credport/credport/store/storetest"
)

// TestGetConnectionEitherReadScope checks that the contract the server publishes says what the
// server does: a key with only environment:connections:read, or only read_credentials, may read a
// connection. In OpenAPI one security requirement listing both scopes demands both, so a
// validator that enforces the published document would refuse either key alone.
func TestGetConnectionEitherReadScope(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "API_KEY")
		v.importOK(`{"provider_config_key":"github","connection_id":"acme","credentials":{"type":"API_KEY","apiKey":"secret-api-key-1"}}`)

		published := v.do(request{method: http.MethodGet, path: "/openapi.yaml"})
		if published.status != http.StatusOK {
			t.Fatalf("GET /openapi.yaml: %d", published.status)
		}
		spec, err := openapi3.NewLoader().LoadFromData(published.body)
		if err != nil {
			t.Fatal(err)
		}
		spec.Servers = nil
		router, err := gorillamux.NewRouter(spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/connections/acme", "/connection/acme"} {
			for _, c := range []struct {
				name   string
				scopes []string
				status int
			}{
				{"read only", []string{scopeRead}, http.StatusOK},
				{"read_credentials only", []string{scopeReadCredentials}, http.StatusOK},
				{"neither", []string{"environment:connections:list"}, http.StatusForbidden},
			} {
				t.Run(path+" "+c.name, func(t *testing.T) {
					u := v.on(t)
					u.key = v.apiKey("dev", c.scopes...)
					res := u.do(request{method: http.MethodGet, path: path + "?provider_config_key=github"})
					if res.status != c.status {
						t.Fatalf("server answered %d, want %d: %s", res.status, c.status, res.body)
					}
					// The published contract must allow exactly what the server allows.
					req := httptest.NewRequest(http.MethodGet, path+"?provider_config_key=github", nil)
					route, params, err := router.FindRoute(req)
					if err != nil {
						t.Fatal(err)
					}
					err = openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
						Request: req, PathParams: params, Route: route,
						Options: &openapi3filter.Options{AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
							for _, s := range in.Scopes {
								if !slices.Contains(c.scopes, s) {
									return openapi3filter.ErrAuthenticationServiceMissing
								}
							}
							return nil
						}},
					})
					if allowed := err == nil; allowed != (c.status == http.StatusOK) {
						t.Errorf("openapi.yaml allows the key: %v (%v); the server answered %d", allowed, err, res.status)
					}
				})
			}
		}
	})
}
