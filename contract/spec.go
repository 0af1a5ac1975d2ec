// Package contract is openapi.yaml at run time: the embedded document, the request validator
// that holds every request to it, and the rules the code derives from it (scopes, auth modes,
// boolean flags, tag keys, how credentials are stored). It knows nothing of HTTP frameworks or
// databases, so that the server and the CLI apply the same rules.
package contract

import (
	"fmt"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/credport/credport"
	"github.com/credport/credport/gen"
)

// YAML is openapi.yaml exactly as written: the contract GET /openapi.yaml serves.
func YAML() []byte { return credport.OpenAPI }

// Load parses the embedded openapi.yaml. Each call returns a document of its own, which the
// caller may change.
func Load() (*openapi3.T, error) {
	doc, err := gen.GetSpec()
	if err != nil {
		return nil, fmt.Errorf("load embedded openapi.yaml: %w", err)
	}
	return doc, nil
}

// schemaNamed is the component schema name of doc.
func schemaNamed(doc *openapi3.T, name string) (*openapi3.Schema, error) {
	ref := doc.Components.Schemas[name]
	if ref == nil || ref.Value == nil {
		return nil, fmt.Errorf("openapi.yaml declares no %s schema", name)
	}
	return ref.Value, nil
}

// BodySchema is the JSON body schema of the operation at method and path, and whether the body
// is required.
func BodySchema(doc *openapi3.T, method, path string) (*openapi3.Schema, bool, error) {
	item := doc.Paths.Value(path)
	if item == nil || item.GetOperation(method) == nil {
		return nil, false, fmt.Errorf("openapi.yaml declares no %s %s", method, path)
	}
	body := item.GetOperation(method).RequestBody
	if body == nil || body.Value == nil {
		return nil, false, fmt.Errorf("openapi.yaml declares no request body for %s %s", method, path)
	}
	content := body.Value.Content.Get("application/json")
	if content == nil || content.Schema == nil || content.Schema.Value == nil {
		return nil, false, fmt.Errorf("openapi.yaml declares no JSON schema for %s %s", method, path)
	}
	return content.Schema.Value, body.Value.Required, nil
}
