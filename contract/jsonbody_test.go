package contract

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestDecodeCounted: the one-pass decoder yields what decodeJSON yields, and leaves to it every
// body decodeJSON refuses, so that the error stays decodeJSON's.
func TestDecodeCounted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		fast       bool // decodeCounted vouches for the value
	}{
		{"object", `{"a":"x","b":[1,2.5e3,{"c":null}],"d":true,"e":{}}`, true},
		{"empty containers", `{"a":[],"b":{},"c":[[]]}`, true},
		{"scalar", ` 12345678901234567890 `, true},
		{"escapes", `{"k\u00e9y":"\ud83d\ude00 \"q\" \\"}`, true},
		{"commas in strings", `{"a":"x,y,{[","b":"]}"}`, true},
		{"duplicate member", `{"a":1,"a":2}`, false},
		{"nested duplicate", `{"a":{"b":1,"c":2,"b":3}}`, false},
		{"lone surrogate", `{"a":"\ud800"}`, false},
		{"trailing data", `{"a":1} {}`, false},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", false},
		{"syntax error", `{"a":}`, false},
		{"truncated", `{"a":[1,2`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			values, _ := jsonShape([]byte(tc.body))
			got, ok := decodeCounted([]byte(tc.body), values)
			if ok != tc.fast {
				t.Fatalf("decodeCounted ok = %v, want %v", ok, tc.fast)
			}
			want, err := decodeJSON([]byte(tc.body))
			if ok && (err != nil || !reflect.DeepEqual(got, want)) {
				t.Fatalf("decodeCounted = %#v; decodeJSON = %#v, %v", got, want, err)
			}
			if !ok && err == nil {
				t.Fatalf("decodeJSON accepts %s, which decodeCounted left to it", tc.body)
			}
		})
	}
}

// TestSplitArray: the elements of an array, as encoding/json cuts them.
func TestSplitArray(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`[]`, `[ ]`, `[1]`, `[ {"a":"],[{\"\\"} , [1,[2]], "x,y" ,null,{} ] `,
		`[{"connections":[{"a":1},{"b":"\u005d"}]},"\\",{"c":"}"}]`,
	} {
		var want []json.RawMessage
		if err := json.Unmarshal([]byte(body), &want); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		got := splitArray([]byte(strings.TrimSpace(body)))
		if len(got) != len(want) {
			t.Fatalf("%s: %d elements, want %d", body, len(got), len(want))
		}
		for i := range want {
			if string(got[i]) != string(want[i]) {
				t.Errorf("%s: element %d = %s, want %s", body, i, got[i], want[i])
			}
		}
	}
}
