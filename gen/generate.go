// Package gen holds the code oapi-codegen generates from openapi.yaml. Nothing here is edited by hand.
package gen

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config cfg.yaml ../openapi.yaml
