//go:build tools

// Package tools pins the code generator's version in go.mod.
package credport

import _ "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen"
