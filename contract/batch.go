package contract

import (
	"github.com/credport/credport/gen"

	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/getkin/kin-openapi/openapi3"
)

// checkBatchEnvelope parses and validates the envelope of POST /connections/batch. Its items
// are kept as raw JSON and not looked into: each is checked on its own by the handler, so that
// nothing inside one item (a duplicate member, a NUL character, a schema error) fails the others.
func (v *Validator) checkBatchEnvelope(schema *openapi3.Schema, required bool, data []byte, charge Charge) (any, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return v.CheckJSON(schema, required, data, charge)
	}
	invalidJSON := func(err error) (any, error) {
		return nil, NewError(gen.ErrorCodeInvalidJson, "Request body is not valid JSON: "+err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return v.CheckJSON(schema, required, data, charge) // not an object: the errors of any body
	}
	value := map[string]any{}
	shape := map[string]any{} // value with a placeholder per item, for the envelope's schema
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return invalidJSON(err)
		}
		name := tok.(string) // the decoder only yields strings as member names
		if _, dup := value[name]; dup {
			return invalidJSON(fmt.Errorf("member %q appears twice in one object", name))
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return invalidJSON(err)
		}
		if name == "connections" && raw[0] == '[' {
			items := splitArray(raw)
			values, placeholders := make([]any, len(items)), make([]any, len(items))
			for i, item := range items {
				values[i], placeholders[i] = item, map[string]any{}
			}
			value[name], shape[name] = values, placeholders
			continue
		}
		member, err := decodeJSON(raw)
		if err != nil {
			return invalidJSON(err)
		}
		value[name], shape[name] = member, member
	}
	if _, err := dec.Token(); err != nil {
		return invalidJSON(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalidJSON(errors.New("unexpected data after the JSON value"))
	}
	if details := v.ValidateValue(schema, shape, nil); len(details) > 0 {
		return value, InvalidBody("Invalid request body", details...)
	}
	return value, nil
}

// splitArray is the elements of data, a JSON array the decoder has read, as raw JSON without
// the white space around them. The elements are slices of data.
func splitArray(data []byte) []json.RawMessage {
	var items []json.RawMessage
	depth, start := 0, 0
	inString, escaped := false, false
	for i, ch := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case ch == '\\':
				escaped = true
			case ch == '"':
				inString = false
			}
			continue
		}
		switch ch {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth == 1 {
				start = i + 1
			}
		case '}', ']':
			depth--
			if depth == 0 {
				if item := bytes.TrimSpace(data[start:i]); len(item) > 0 || len(items) > 0 {
					items = append(items, item)
				}
			}
		case ',':
			if depth == 1 {
				items = append(items, bytes.TrimSpace(data[start:i]))
				start = i + 1
			}
		}
	}
	return items
}
