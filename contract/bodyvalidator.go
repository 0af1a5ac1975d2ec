package contract

import (
	"net/http"

	"github.com/getkin/kin-openapi/openapi3"
)

// BodyValidator checks a request body offline with the schema, rules, codes and error paths the
// server applies to it, so that a client can refuse a body before sending it. It is safe for
// concurrent use.
type BodyValidator struct {
	v        *Validator
	schema   *openapi3.Schema
	required bool
}

// NewBodyValidator is the validator of the JSON body of the operation at method and path in
// the embedded openapi.yaml, e.g. ("POST", "/connections").
func NewBodyValidator(method, path string) (*BodyValidator, error) {
	doc, err := Load()
	if err != nil {
		return nil, err
	}
	schema, required, err := BodySchema(doc, method, path)
	if err != nil {
		return nil, err
	}
	return &BodyValidator{v: &Validator{schemaOpts: schemaOptions()}, schema: schema, required: required}, nil
}

// NewImportValidator is the BodyValidator of POST /connections.
func NewImportValidator() (*BodyValidator, error) {
	return NewBodyValidator(http.MethodPost, "/connections")
}

// Validate returns nil when the server's validation would accept body, else the error it would
// answer: invalid_json or invalid_body, with the same field errors and paths. value is the
// parsed body (objects as map[string]any, numbers as json.Number) whenever it is JSON.
func (b *BodyValidator) Validate(body []byte) (value any, err *Error) {
	value, checkErr := b.v.CheckJSON(b.schema, b.required, body, nil)
	if checkErr != nil {
		// Without a charge function every error is the contract's.
		return value, checkErr.(*Error)
	}
	return value, nil
}
