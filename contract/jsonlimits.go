package contract

import "fmt"

// The limits of a request body's JSON that its schema cannot express. openapi.yaml bounds the
// members of the objects and lists it names (maxProperties, maxItems); these bound the rest, such
// as what free-form metadata holds. jsonShape checks them in one pass over the bytes, before
// anything is decoded.
const (
	// maxJSONDepth bounds how deeply a body may nest objects and arrays.
	maxJSONDepth = 64
	// maxJSONValues bounds the values a body holds in all (objects, arrays, strings, numbers,
	// literals; each member and element once): a 1 MiB body of {} would otherwise decode into
	// some 27 MB.
	maxJSONValues = 20_000
	// JSONValueBytes is about what one decoded value holds in memory; a body's share of the
	// bytes in flight grows by it for each of its values.
	JSONValueBytes = 128
)

// jsonShape counts the values of a JSON text and how deeply it nests, without decoding it. On
// text that is not JSON the counts are only estimates; the decoder refuses such text anyway.
// It stops counting once either limit is passed.
func jsonShape(data []byte) (values, depth int) {
	values = 1
	level := 0
	inString, escaped, opened := false, false, false
	for _, ch := range data {
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
		if ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' {
			continue
		}
		if opened && ch != '}' && ch != ']' {
			values++ // the first member or element of a container; each comma adds the others
		}
		opened = false
		switch ch {
		case '"':
			inString = true
		case '{', '[':
			level++
			depth = max(depth, level)
			opened = true
		case '}', ']':
			level--
		case ',':
			values++
		}
		if values > maxJSONValues || depth > maxJSONDepth {
			return values, depth
		}
	}
	return values, depth
}

// checkJSONShape is the error of a body over maxJSONDepth or maxJSONValues, else nil with the
// number of values it holds.
func checkJSONShape(data []byte) (int, *Error) {
	values, depth := jsonShape(data)
	switch {
	case depth > maxJSONDepth:
		return values, InvalidBody(fmt.Sprintf("Request body is too complex: nested deeper than %d levels", maxJSONDepth))
	case values > maxJSONValues:
		return values, InvalidBody(fmt.Sprintf("Request body is too complex: more than %d values", maxJSONValues))
	}
	return values, nil
}
