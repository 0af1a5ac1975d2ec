package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// The limits of a request body's JSON that its schema cannot express. openapi.yaml bounds the
// members of the objects and arrays it names (maxProperties, maxItems); these bound what it
// cannot, inside free-form metadata and connection_config. Both are checked while the body is
// parsed, token by token, so that a body over them costs no more than the values below it.
const (
	// maxJSONDepth bounds how deeply a body may nest objects and arrays.
	maxJSONDepth = 64
	// maxJSONNodes bounds the values (objects, arrays, strings, numbers, literals) a body holds
	// in all, each object member and array element counted once: what a 1 MiB body of {} would
	// otherwise turn into some 27 MB of parsed values.
	maxJSONNodes = 50_000
)

// errJSONLimit is a body that is JSON but over maxJSONDepth or maxJSONNodes.
var errJSONLimit = errors.New("request body is too complex")

// decodeJSON parses a request body strictly: valid UTF-8, one value, no member name twice in an
// object, at most maxJSONDepth levels and maxJSONNodes values (errJSONLimit beyond), numbers kept
// exactly as sent.
func decodeJSON(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	nodes := 0
	value, err := decodeValue(dec, 0, &nodes)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return value, nil
}

// decodeValue decodes the next value of dec, at depth, counting it and every value inside it in
// nodes.
func decodeValue(dec *json.Decoder, depth int, nodes *int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if *nodes++; *nodes > maxJSONNodes {
		return nil, fmt.Errorf("%w: more than %d values", errJSONLimit, maxJSONNodes)
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	if depth >= maxJSONDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d levels", errJSONLimit, maxJSONDepth)
	}
	switch delim {
	case '{':
		obj := map[string]any{}
		for dec.More() {
			keyTok, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key := keyTok.(string) // the decoder only yields strings as member names
			if _, dup := obj[key]; dup {
				return nil, fmt.Errorf("member %q appears twice in one object", key)
			}
			if obj[key], err = decodeValue(dec, depth+1, nodes); err != nil {
				return nil, err
			}
		}
		_, err = dec.Token() // '}'
		return obj, err
	case '[':
		arr := []any{}
		for dec.More() {
			v, err := decodeValue(dec, depth+1, nodes)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err = dec.Token() // ']'
		return arr, err
	}
	return nil, fmt.Errorf("unexpected %v", delim)
}
