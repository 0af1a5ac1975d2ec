package server

import (
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3filter"
)

// Scopes are the scopes an API key may hold, named as the reference names them.
var Scopes = []string{
	"environment:*",
	"environment:connections:*",
	"environment:connections:create",
	"environment:connections:read",
	"environment:connections:read_credentials",
	"environment:connections:list",
	"environment:connections:update",
	"environment:connections:delete",
	"environment:integrations:*",
	"environment:integrations:list",
	"environment:integrations:list_credentials",
	"environment:integrations:read",
	"environment:integrations:read_credentials",
	"environment:integrations:create",
	"environment:integrations:update",
	"environment:integrations:delete",
}

// FullAccess is what a key gets when it is created without scopes.
const FullAccess = "environment:*"

// ValidScope tells whether s is one of Scopes.
func ValidScope(s string) bool {
	for _, known := range Scopes {
		if s == known {
			return true
		}
	}
	return false
}

// grants tells whether a key holding held may act where required is asked. A held scope ending
// in ":*" grants every scope under its prefix.
func grants(held []string, required string) bool {
	for _, h := range held {
		if h == required {
			return true
		}
		if prefix, ok := strings.CutSuffix(h, "*"); ok && strings.HasPrefix(required, prefix) {
			return true
		}
	}
	return false
}

// missingScopeMessage words a 403 the way the reference does.
func missingScopeMessage(required []string) string {
	if len(required) == 1 {
		return "Insufficient scope. Required: " + required[0]
	}
	return "Insufficient scope. Required one of: " + strings.Join(required, " or ")
}

// operationScopes are the scopes of every security requirement of the operation under scheme, in
// the order openapi.yaml lists them: any one of them is enough when each requirement names one.
func operationScopes(input *openapi3filter.AuthenticationInput) []string {
	route := input.RequestValidationInput.Route
	if route == nil || route.Operation == nil || route.Operation.Security == nil {
		return input.Scopes
	}
	var out []string
	for _, req := range *route.Operation.Security {
		for _, s := range req[input.SecuritySchemeName] {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	if len(out) == 0 {
		return input.Scopes
	}
	return out
}
