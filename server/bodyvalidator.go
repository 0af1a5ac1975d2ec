package server

import (
	"fmt"
	"net/http"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/credport/credport/gen"
)

// BodyValidator checks a request body offline with the schema, rules, codes and error paths the
// server applies to it, so that a client can refuse a body before sending it. It is safe for
// concurrent use.
type BodyValidator struct {
	v        *validator
	schema   *openapi3.Schema
	required bool
}

// NewBodyValidator is the validator of the JSON body of the operation at method and path in
// the embedded openapi.yaml, e.g. ("POST", "/connections").
func NewBodyValidator(method, path string) (*BodyValidator, error) {
	spec, err := gen.GetSpec()
	if err != nil {
		return nil, fmt.Errorf("load embedded openapi.yaml: %w", err)
	}
	item := spec.Paths.Value(path)
	if item == nil {
		return nil, fmt.Errorf("openapi.yaml declares no path %s", path)
	}
	op := item.GetOperation(method)
	if op == nil || op.RequestBody == nil || op.RequestBody.Value == nil {
		return nil, fmt.Errorf("openapi.yaml declares no request body for %s %s", method, path)
	}
	content := op.RequestBody.Value.Content.Get("application/json")
	if content == nil || content.Schema == nil || content.Schema.Value == nil {
		return nil, fmt.Errorf("openapi.yaml declares no JSON schema for %s %s", method, path)
	}
	return &BodyValidator{
		v:        &validator{schemaOpts: schemaOptions()},
		schema:   content.Schema.Value,
		required: op.RequestBody.Value.Required,
	}, nil
}

// NewImportValidator is the BodyValidator of POST /connections.
func NewImportValidator() (*BodyValidator, error) {
	return NewBodyValidator(http.MethodPost, "/connections")
}

// Validate returns nil when the server's validation would accept body, else the error it would
// answer: 400 invalid_json or invalid_body, with the same field errors and paths. value is the
// parsed body (objects as map[string]any, numbers as json.Number) whenever it is JSON.
func (b *BodyValidator) Validate(body []byte) (value any, err *Error) {
	return b.v.checkBody(b.schema, b.required, body, nil)
}
