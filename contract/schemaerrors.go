package contract

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/credport/credport/gen"
)

// schemaErrorDetails flattens what kin-openapi reports into field errors whose path runs from the
// body (or query) root, prefixed by at. A oneOf/anyOf/allOf failure is replaced by the failures
// inside it: with a discriminator kin-openapi has validated only the variant the value names, so
// those are exactly that variant's errors.
func schemaErrorDetails(err error, at []string) []gen.ErrorDetail {
	var out []gen.ErrorDetail
	var walk func(err error, at []string)
	walk = func(err error, at []string) {
		var multi openapi3.MultiError
		var reqErr *openapi3filter.RequestError
		var schemaErr *openapi3.SchemaError
		// A parameter's RequestError is taken before the MultiError it wraps, so that its errors
		// carry the parameter's name; errors.As would find the MultiError inside it first.
		switch {
		case isRequestError(err) && errors.As(err, &reqErr):
			walkRequestError(reqErr, at, walk, &out)
		case errors.As(err, &multi) && !isSchemaError(err):
			for _, e := range multi {
				walk(e, at)
			}
		case errors.As(err, &reqErr):
			walkRequestError(reqErr, at, walk, &out)
		case errors.As(err, &schemaErr):
			out = append(out, schemaErrorDetail(schemaErr, at)...)
		default:
			out = append(out, Detail("invalid", err.Error(), at))
		}
	}
	walk(err, at)
	return dedupe(out)
}

// dedupe drops repeated details: a value that is not even an object fails every variant of a
// oneOf the same way.
func dedupe(details []gen.ErrorDetail) []gen.ErrorDetail {
	seen := make(map[string]bool, len(details))
	out := details[:0]
	for _, d := range details {
		k := d.Code + "\x00" + d.Message + "\x00" + strings.Join(d.Path, "\x00")
		if !seen[k] {
			seen[k] = true
			out = append(out, d)
		}
	}
	return out
}

// walkRequestError walks what reqErr wraps, at the path of its parameter when it has one.
func walkRequestError(reqErr *openapi3filter.RequestError, at []string, walk func(error, []string), out *[]gen.ErrorDetail) {
	if reqErr.Parameter != nil {
		at = append(slices.Clone(at), reqErr.Parameter.Name)
	}
	if reqErr.Err == nil {
		*out = append(*out, Detail("invalid", reqErr.Reason, at))
		return
	}
	before := len(*out)
	walk(reqErr.Err, at)
	if len(*out) == before {
		*out = append(*out, Detail("invalid", reqErr.Error(), at))
	}
}

func isRequestError(err error) bool {
	_, ok := err.(*openapi3filter.RequestError)
	return ok
}

func isSchemaError(err error) bool {
	_, ok := err.(*openapi3.SchemaError)
	return ok
}

func schemaErrorDetail(e *openapi3.SchemaError, at []string) []gen.ErrorDetail {
	path := append(slices.Clone(at), e.JSONPointer()...)
	switch e.SchemaField {
	case "oneOf", "anyOf", "allOf":
		var inner openapi3.MultiError
		if e.Origin != nil && errors.As(e.Origin, &inner) {
			if details := schemaErrorDetails(inner, at); len(details) > 0 {
				return details
			}
		}
		return []gen.ErrorDetail{Detail("invalid_union", e.Reason, path)}
	case "discriminator":
		if d := e.Schema.Discriminator; d != nil {
			values := make([]string, 0, len(d.Mapping))
			for v := range d.Mapping {
				values = append(values, "'"+v+"'")
			}
			slices.Sort(values)
			return []gen.ErrorDetail{Detail("invalid_union_discriminator",
				"Invalid discriminator value. Expected "+strings.Join(values, " | "),
				append(path, d.PropertyName))}
		}
	case "required":
		return []gen.ErrorDetail{Detail("invalid_type", e.Reason, path)}
	}
	return []gen.ErrorDetail{Detail(schemaErrorCode(e.SchemaField), schemaErrorMessage(e), path)}
}

// schemaErrorMessage is kin-openapi's reason, except where that reason would show a person a
// regular expression: a boolean flag or a date-time says what it must be instead.
func schemaErrorMessage(e *openapi3.SchemaError) string {
	if e.Schema == nil {
		return e.Reason
	}
	switch e.SchemaField {
	case "format":
		switch e.Schema.Format {
		case "date-time":
			return "must be an RFC 3339 date-time, such as 2026-01-31T09:30:00Z"
		case "email":
			return "must be an email address"
		}
	case "pattern":
		if message := booleanMessage(e.Schema); message != "" {
			return message
		}
	}
	return e.Reason
}

func schemaErrorCode(field string) string {
	switch field {
	case "type", "nullable":
		return "invalid_type"
	case "properties", "additionalProperties":
		return "unrecognized_keys"
	case "minLength", "minProperties", "minItems", "minimum", "exclusiveMinimum":
		return "too_small"
	case "maxLength", "maxProperties", "maxItems", "maximum", "exclusiveMaximum":
		return "too_big"
	case "pattern", "format":
		return "invalid_string"
	case "enum":
		return "invalid_enum_value"
	}
	return "invalid"
}

// CheckPropertyNames applies the propertyNames keyword, which kin-openapi's built-in validator
// does not evaluate, to every object of value that schema constrains so.
func (v *Validator) CheckPropertyNames(schema *openapi3.Schema, value any, at []string) []gen.ErrorDetail {
	return v.appendPropertyNames(nil, schema, value, slices.Clip(at))
}

// appendPropertyNames appends the details of CheckPropertyNames to out. Children extend at in
// place, which at was clipped for; a detail takes a copy of its path.
func (v *Validator) appendPropertyNames(out []gen.ErrorDetail, schema *openapi3.Schema, value any, at []string) []gen.ErrorDetail {
	switch val := value.(type) {
	case map[string]any:
		if pn := schema.PropertyNames; pn != nil && pn.Value != nil {
			keys := make([]string, 0, len(val))
			for k := range val {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				if err := pn.Value.VisitJSON(k, v.schemaOpts...); err != nil {
					out = append(out, Detail("invalid_key", "Invalid key in record", append(slices.Clone(at), k)))
				}
			}
		}
		for k, child := range val {
			if sub := propertySchema(schema, k); sub != nil {
				out = v.appendPropertyNames(out, sub, child, append(at, k))
			}
		}
	case []any:
		if schema.Items != nil && schema.Items.Value != nil {
			for i, child := range val {
				out = v.appendPropertyNames(out, schema.Items.Value, child, append(at, strconv.Itoa(i)))
			}
		}
	}
	if variant := discriminatedVariant(schema, value); variant != nil {
		out = v.appendPropertyNames(out, variant, value, at)
	}
	for _, s := range schema.AllOf {
		if s.Value != nil {
			out = v.appendPropertyNames(out, s.Value, value, at)
		}
	}
	return out
}

func propertySchema(schema *openapi3.Schema, key string) *openapi3.Schema {
	if p, ok := schema.Properties[key]; ok && p.Value != nil {
		return p.Value
	}
	if ap := schema.AdditionalProperties.Schema; ap != nil {
		return ap.Value
	}
	return nil
}

// discriminatedVariant is the oneOf/anyOf member the value's discriminator names, if any.
func discriminatedVariant(schema *openapi3.Schema, value any) *openapi3.Schema {
	d := schema.Discriminator
	obj, ok := value.(map[string]any)
	if d == nil || !ok {
		return nil
	}
	name, _ := obj[d.PropertyName].(string)
	ref, ok := d.Mapping[name]
	if !ok {
		return nil
	}
	for _, member := range append(slices.Clone(schema.OneOf), schema.AnyOf...) {
		if member.Ref == ref.Ref && member.Value != nil {
			return member.Value
		}
	}
	return nil
}

// DiscriminatorValue is the value of the first discriminator found under schema's properties
// (for an import, credentials.type), or "".
func DiscriminatorValue(schema *openapi3.Schema, value any) string {
	obj, ok := value.(map[string]any)
	if !ok {
		return ""
	}
	for name, prop := range schema.Properties {
		if prop.Value == nil || prop.Value.Discriminator == nil {
			continue
		}
		if child, ok := obj[name].(map[string]any); ok {
			s, _ := child[prop.Value.Discriminator.PropertyName].(string)
			if _, known := prop.Value.Discriminator.Mapping[s]; known {
				return s // only declared values, so that metric labels stay bounded
			}
			return ""
		}
	}
	return ""
}
