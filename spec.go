// Package credport holds the API contract, openapi.yaml, embedded into every binary; package
// contract is what reads it.
package credport

import _ "embed"

// OpenAPI is openapi.yaml exactly as written: the contract GET /openapi.yaml serves.
//
//go:embed openapi.yaml
var OpenAPI []byte
