package contract

import (
	"github.com/credport/credport/gen"

	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// A JSON string may spell a UTF-16 surrogate with a \u escape. encoding/json turns a lone one
// (not a high surrogate directly followed by a low one) into U+FFFD, which would store another
// value than the one sent, e.g. another secret: such a body is refused instead.

// loneSurrogateError is a body holding a lone surrogate escape, at path (keys and indices from the
// body root; for a member name, the path of that member).
type loneSurrogateError struct {
	path []string
}

func (e *loneSurrogateError) Error() string {
	return "a string holds a lone UTF-16 surrogate escape"
}

// jsonError is the invalid_json of a body that decodeJSON refused.
func jsonError(err error) *Error {
	message := "Request body is not valid JSON: " + err.Error()
	if e, ok := err.(*loneSurrogateError); ok {
		return NewError(gen.ErrorCodeInvalidJson, message,
			Detail("invalid_string", "must not hold a lone UTF-16 surrogate escape", e.path))
	}
	return NewError(gen.ErrorCodeInvalidJson, message)
}

// findLoneSurrogate returns the error for the first string of data, valid JSON, that holds a lone
// surrogate escape, or nil.
func findLoneSurrogate(data []byte) error {
	if !bytes.Contains(data, []byte(`\u`)) {
		return nil
	}
	type level struct {
		object bool
		key    string // object: the current member's name
		index  int    // array: the current element's index
		inKey  bool   // object: the next string is a member name
	}
	var stack []level
	path := func(extra ...string) []string {
		out := make([]string, 0, len(stack)+len(extra))
		for _, l := range stack {
			if l.object {
				out = append(out, l.key)
			} else {
				out = append(out, strconv.Itoa(l.index))
			}
		}
		return append(out, extra...)
	}
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{':
			stack = append(stack, level{object: true, inKey: true})
		case '[':
			stack = append(stack, level{})
		case '}', ']':
			stack = stack[:len(stack)-1]
		case ',':
			if top := &stack[len(stack)-1]; top.object {
				top.inKey = true
			} else {
				top.index++
			}
		case ':':
			stack[len(stack)-1].inKey = false
		case '"':
			end, lone := scanString(data, i)
			if len(stack) > 0 && stack[len(stack)-1].object && stack[len(stack)-1].inKey {
				var key string
				if err := json.Unmarshal(data[i:end+1], &key); err != nil {
					return fmt.Errorf("member name: %w", err)
				}
				if lone {
					parent := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					p := path(key)
					stack = append(stack, parent)
					return &loneSurrogateError{path: p}
				}
				stack[len(stack)-1].key = key
			} else if lone {
				return &loneSurrogateError{path: path()}
			}
			i = end
		}
	}
	return nil
}

// scanString reads the string literal that starts at data[start] (a quote): the index of its
// closing quote, and whether it holds a lone surrogate escape.
func scanString(data []byte, start int) (end int, lone bool) {
	for i := start + 1; i < len(data); i++ {
		switch data[i] {
		case '"':
			return i, lone
		case '\\':
			if i+1 < len(data) && data[i+1] == 'u' {
				u, ok := hex4(data, i+2)
				switch {
				case ok && u >= 0xD800 && u <= 0xDBFF:
					if low, okLow := hex4(data, i+8); okLow && data[i+6] == '\\' && data[i+7] == 'u' && low >= 0xDC00 && low <= 0xDFFF {
						i += 11 // the pair
						continue
					}
					lone = true
				case ok && u >= 0xDC00 && u <= 0xDFFF:
					lone = true
				}
				i += 5
				continue
			}
			i++ // the escaped character
		}
	}
	return len(data) - 1, lone
}

// hex4 is the code unit of the four hex digits at data[at:], if they are there.
func hex4(data []byte, at int) (rune, bool) {
	if at+4 > len(data) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(data[at:at+4]), 16, 16)
	return rune(n), err == nil
}
