package contract

import (
	"fmt"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// BearerScheme is the name of the security scheme of openapi.yaml that API keys answer.
const BearerScheme = "bearerAuth"

// FullAccess is what a key gets when it is created without scopes: the wildcard that grants
// every scope openapi.yaml declares (NewRules checks that it does).
const FullAccess = "environment:*"

// scopes are the scopes an API key may hold, named as the reference names them: each scope the
// bearer scheme declares (x-scopes), preceded by the wildcards above it not listed yet. A scope
// ending in ":*" grants every scope under its prefix.
func scopes(doc *openapi3.T) ([]string, error) {
	ref := doc.Components.SecuritySchemes[BearerScheme]
	if ref == nil || ref.Value == nil {
		return nil, fmt.Errorf("openapi.yaml declares no security scheme %s", BearerScheme)
	}
	declared, err := stringList(ref.Value.Extensions, "x-scopes")
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: security scheme %s: %w", BearerScheme, err)
	}
	var out []string
	for _, s := range declared {
		parts := strings.Split(s, ":")
		for i := 1; i < len(parts); i++ {
			if w := strings.Join(parts[:i], ":") + ":*"; !slices.Contains(out, w) {
				out = append(out, w)
			}
		}
		if slices.Contains(out, s) {
			return nil, fmt.Errorf("openapi.yaml: scope %q is declared twice", s)
		}
		out = append(out, s)
	}
	used := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.Security == nil {
				continue
			}
			for _, req := range *op.Security {
				for _, s := range req[BearerScheme] {
					if !slices.Contains(declared, s) {
						return nil, fmt.Errorf("openapi.yaml: %s %s asks for scope %q, which %s does not declare", method, path, s, BearerScheme)
					}
					used[s] = true
				}
			}
		}
	}
	for _, s := range declared {
		if !used[s] {
			return nil, fmt.Errorf("openapi.yaml: scope %q is declared but no operation asks for it", s)
		}
		if !Grants([]string{FullAccess}, s) {
			return nil, fmt.Errorf("openapi.yaml: scope %q is not under %s", s, FullAccess)
		}
	}
	return out, nil
}

// Grants tells whether a key holding held may act where required is asked. A held scope ending
// in ":*" grants every scope under its prefix.
func Grants(held []string, required string) bool {
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

// GrantsAny tells whether held grants one of required.
func GrantsAny(held, required []string) bool {
	for _, r := range required {
		if Grants(held, r) {
			return true
		}
	}
	return false
}

// CheckSecuritySchemes makes sure that doc names no security scheme but the bearer key the
// server checks, so that no requirement can pass unchecked.
func CheckSecuritySchemes(doc *openapi3.T) error {
	check := func(where string, reqs openapi3.SecurityRequirements) error {
		for _, r := range reqs {
			for name := range r {
				if name != BearerScheme {
					return fmt.Errorf("openapi.yaml: %s names security scheme %q, which the server does not check", where, name)
				}
			}
		}
		return nil
	}
	if err := check("the document", doc.Security); err != nil {
		return err
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.Security != nil {
				if err := check(method+" "+path, *op.Security); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// stringList is the extension name of ext, a list of strings.
func stringList(ext map[string]any, name string) ([]string, error) {
	raw, ok := ext[name].([]any)
	if !ok || len(raw) == 0 {
		return nil, fmt.Errorf("no %s list", name)
	}
	out := make([]string, len(raw))
	for i, v := range raw {
		s, ok := v.(string)
		if !ok || s == "" {
			return nil, fmt.Errorf("%s[%d] is not a string", name, i)
		}
		out[i] = s
	}
	return out, nil
}
