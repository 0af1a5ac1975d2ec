package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
)

// storedCredentials is what an import at time now stores for the given credentials, as policies
// say for their type, and when they must be renewed: nil for credentials that cannot be renewed
// or never expire. An OAUTH2
// token with a refresh token but no expiry is due at once, so that a first refresh tells its
// real expiry instead of leaving it to a guess.
//
// sent is the credentials object as the validator decoded it, read instead of decoding creds
// again; nil when there is none, and then creds is decoded. The JSON the binder made of sent is
// the one encode of the credentials: the stored form is cut from it (storedForm), and raw is it.
func storedCredentials(creds gen.ImportCredentials, sent map[string]any, policies map[string]contract.CredentialPolicy, now time.Time) (json.RawMessage, *time.Time, error) {
	input, err := creds.MarshalJSON()
	if err != nil {
		return nil, nil, fmt.Errorf("credentials: %w", err)
	}
	// input is the JSON the binder encoded sent into, unless it decoded the body itself.
	cut := sent != nil
	if !cut {
		if err := json.Unmarshal(input, &sent); err != nil {
			return nil, nil, fmt.Errorf("credentials: %w", err)
		}
	}
	typ, _ := sent["type"].(string)
	policy, ok := policies[typ]
	if !ok {
		return nil, nil, fmt.Errorf("no storage policy for credentials type %q", typ)
	}
	if policy.Empty {
		return json.RawMessage(`{}`), nil, nil
	}
	var expiresAt *time.Time
	storedExpiry := ""
	if s, ok := sent["expires_at"].(string); ok {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, nil, fmt.Errorf("credentials expires_at: %w", err)
		}
		t = t.UTC()
		expiresAt = &t
		storedExpiry = t.Format(time.RFC3339Nano)
	}
	if typ == "OAUTH2" {
		if refresh, _ := sent["refresh_token"].(string); refresh == "" {
			expiresAt = nil
		} else if expiresAt == nil {
			expiresAt = &now
		}
	}
	if cut {
		if stored, ok := storedForm(input, storedExpiry, policy.Raw); ok {
			return stored, expiresAt, nil
		}
	}
	// The stored form is encoded from the decoded fields.
	fields := make(map[string]any, len(sent)+1) // sent may be the request's: it is not written to
	for k, v := range sent {
		fields[k] = v
	}
	if storedExpiry != "" {
		fields["expires_at"] = storedExpiry
	}
	if policy.Raw {
		fields["raw"] = json.RawMessage(input)
	}
	stored, err := json.Marshal(fields)
	if err != nil {
		return nil, nil, fmt.Errorf("credentials: %w", err)
	}
	return stored, expiresAt, nil
}

// storedForm is the stored form of credentials cut from encoded, their JSON as encoding/json
// writes a map (compact, the members of every object in key order), without encoding them
// again: encoded's members, expires_at's value replaced by expiry unless that is empty, and
// with raw, encoded itself under "raw" in its place in key order. These are the bytes that
// json.Marshal writes for the same map with those changes. ok is false when encoded is not such
// JSON. expiry is a time in RFC 3339, which needs no escaping.
func storedForm(encoded []byte, expiry string, raw bool) (stored []byte, ok bool) {
	members, ok := sortedMembers(encoded)
	if !ok {
		return nil, false
	}
	out := make([]byte, 0, 2*len(encoded)+len(expiry)+16)
	out = append(out, '{')
	appendMember := func(key string, value []byte) {
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, key...)
		out = append(out, '"', ':')
		out = append(out, value...)
	}
	for _, m := range members {
		if m.key == "raw" {
			return nil, false // json.Marshal would write raw in its place
		}
		if raw && m.key > "raw" {
			appendMember("raw", encoded)
			raw = false
		}
		if m.key == "expires_at" && expiry != "" {
			appendMember(m.key, []byte(`"`+expiry+`"`))
			continue
		}
		appendMember(m.key, m.value)
	}
	if raw {
		appendMember("raw", encoded)
	}
	return append(out, '}'), true
}

// member is one member of a JSON object: its name, which needs no escaping, and its value.
type member struct {
	key   string
	value []byte
}

// sortedMembers are the members of data, a JSON object as encoding/json writes a map: compact,
// the members of every object in strictly increasing order of their names, with no escape in a
// name, strings as encodedStringEnd says. ok is false for anything else, which includes JSON
// that is not valid.
func sortedMembers(data []byte) (members []member, ok bool) {
	if len(data) < 2 || data[0] != '{' {
		return nil, false
	}
	type frame struct {
		object, wantKey, hasKey bool
		lastKey                 string
	}
	var stack []frame
	valueStart := 0
	for i := 0; i < len(data); i++ {
		top := len(stack) - 1
		switch c := data[i]; c {
		case '"':
			end, ok := encodedStringEnd(data, i)
			if !ok {
				return nil, false
			}
			if top >= 0 && stack[top].wantKey {
				key := string(data[i+1 : end])
				f := &stack[top]
				if strings.IndexByte(key, '\\') >= 0 || (f.hasKey && key <= f.lastKey) ||
					end+1 >= len(data) || data[end+1] != ':' {
					return nil, false
				}
				f.lastKey, f.hasKey, f.wantKey = key, true, false
				if top == 0 {
					members = append(members, member{key: key})
					valueStart = end + 2
				}
				end++ // the colon
			}
			i = end
		case '{', '[':
			stack = append(stack, frame{object: c == '{', wantKey: c == '{'})
		case '}', ']':
			if top < 0 || stack[top].object != (c == '}') || (stack[top].wantKey && stack[top].hasKey) {
				return nil, false
			}
			stack = stack[:top]
			if top == 0 {
				if i != len(data)-1 {
					return nil, false
				}
				if len(members) > 0 {
					members[len(members)-1].value = data[valueStart:i]
				}
			}
		case ',':
			if top < 0 || (top == 0 && len(members) == 0) {
				return nil, false
			}
			if stack[top].object {
				stack[top].wantKey = true
			}
			if top == 0 {
				members[len(members)-1].value = data[valueStart:i]
			}
		case ' ', '\t', '\n', '\r':
			return nil, false
		}
	}
	if len(stack) != 0 {
		return nil, false
	}
	return members, true
}

// encodedStringEnd is the index of the quote that ends the string starting at data[start], when
// the string is as encoding/json writes strings: no byte below 0x20, nor <, > or &, nor U+2028
// or U+2029 as they are, and only the escapes it writes. ok is false for anything else.
func encodedStringEnd(data []byte, start int) (end int, ok bool) {
	for i := start + 1; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			return i, true
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			return 0, false
		case c == 0xE2 && i+2 < len(data) && data[i+1] == 0x80 && (data[i+2] == 0xA8 || data[i+2] == 0xA9):
			return 0, false
		case c == '\\':
			n := escapeLen(data[i+1:])
			if n == 0 {
				return 0, false
			}
			i += n
		}
	}
	return 0, false
}

// escapeLen is the length of the escape data starts with, after its backslash, when it is one
// that encoding/json writes; 0 for any other.
func escapeLen(data []byte) int {
	if len(data) == 0 {
		return 0
	}
	switch data[0] {
	case '"', '\\', 'b', 'f', 'n', 'r', 't':
		return 1
	case 'u':
		if len(data) < 5 {
			return 0
		}
		switch code := string(data[1:5]); code {
		case "003c", "003e", "0026", "2028", "2029":
			return 5
		case "0008", "0009", "000a", "000c", "000d": // written as \b, \t, \n, \f, \r
			return 0
		default:
			// Other control characters, in lower-case hex.
			if code[:2] == "00" && (code[2] == '0' || code[2] == '1') &&
				strings.IndexByte("0123456789abcdef", code[3]) >= 0 {
				return 5
			}
		}
	}
	return 0
}
