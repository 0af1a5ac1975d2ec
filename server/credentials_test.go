package server

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/oapi-codegen/runtime"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
)

// TestStoredCredentialsBytes requires the stored form cut from the binder's JSON to be, byte for
// byte, what encoding the decoded credentials writes: the stored bytes of every import stay as
// they were when the credentials were decoded and encoded again.
func TestStoredCredentialsBytes(t *testing.T) {
	rules, err := contract.LoadRules()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		creds string
	}{
		{"OAUTH2 minimal", `{"type":"OAUTH2","access_token":"at"}`},
		{"OAUTH2 with everything", `{"access_token":"at","refresh_token":"rt","expires_at":"2030-01-02T03:04:05+02:00","config_override":{"client_secret":"cs","client_id":"ci"},"type":"OAUTH2"}`},
		{"OAUTH2 expiry kept", `{"type":"OAUTH2","access_token":"at","refresh_token":"rt","expires_at":"2030-01-02T03:04:05.250Z"}`},
		{"OAUTH2 escapes", `{"type":"OAUTH2","access_token":"a\"b\\c<d>&e\u2028f\u00e9 \t/","refresh_token":"}{,:[]\"","config_override":{"client_id":"\"x\":{"}}`},
		{"OAUTH2 control characters", `{"type":"OAUTH2","access_token":"\u0001\b\f\n\r\t\u001f\u007f\ufffd\u0041\/"}`},
		{"OAUTH2 white space", "{ \"type\" : \"OAUTH2\" ,\n\"access_token\":\"a t\" }"},
		{"OAUTH1", `{"type":"OAUTH1","oauth_token":"ot","oauth_token_secret":"os"}`},
		{"OAUTH2_CC", `{"type":"OAUTH2_CC","token":"tk","client_id":"ci","client_secret":"cs","expires_at":"2031-06-07T08:09:10+01:00"}`},
		{"API_KEY", `{"type":"API_KEY","apiKey":"k-123"}`},
		{"BASIC", `{"type":"BASIC","username":"","password":"p<"}`},
		{"TBA", `{"type":"TBA","token_id":"ti","token_secret":"ts","config_override":{"client_id":"oi"}}`},
		{"NONE", `{"type":"NONE"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := json.NewDecoder(bytes.NewReader([]byte(`{"credentials":` + tt.creds + `}`)))
			dec.UseNumber() // as the validator decodes a body
			var body any
			if err := dec.Decode(&body); err != nil {
				t.Fatal(err)
			}
			var bound gen.ImportConnectionRequest // as the generated handler binds it
			if err := runtime.BindJSONValue(body, &bound); err != nil {
				t.Fatal(err)
			}
			sent := credentialsOf(body)
			if input, _ := bound.Credentials.MarshalJSON(); !sortedMembersOK(input) {
				t.Fatalf("storedForm refuses the binder's JSON %s", input)
			}
			got, gotExpiry, err := storedCredentials(bound.Credentials, sent, rules.CredentialPolicies, now)
			if err != nil {
				t.Fatal(err)
			}
			want, wantExpiry := encodedStoredCredentials(t, bound.Credentials, rules.CredentialPolicies, now)
			if !bytes.Equal(got, want) {
				t.Errorf("stored\n%s\nwant\n%s", got, want)
			}
			if (gotExpiry == nil) != (wantExpiry == nil) || gotExpiry != nil && !gotExpiry.Equal(*wantExpiry) {
				t.Errorf("expiry %v, want %v", gotExpiry, wantExpiry)
			}
			// Without the validator's value the credentials are decoded: the same bytes.
			if got, _, err := storedCredentials(bound.Credentials, nil, rules.CredentialPolicies, now); err != nil || !bytes.Equal(got, want) {
				t.Errorf("stored without the decoded value\n%s (%v)\nwant\n%s", got, err, want)
			}
		})
	}
}

func sortedMembersOK(data []byte) bool {
	_, ok := sortedMembers(data)
	return ok
}

// encodedStoredCredentials is the stored form as decoding the credentials and encoding them
// again writes it.
func encodedStoredCredentials(t *testing.T, creds gen.ImportCredentials, policies map[string]contract.CredentialPolicy, now time.Time) (json.RawMessage, *time.Time) {
	t.Helper()
	input, _ := creds.MarshalJSON()
	var fields map[string]any
	if err := json.Unmarshal(input, &fields); err != nil {
		t.Fatal(err)
	}
	typ := fields["type"].(string)
	if policies[typ].Empty {
		return json.RawMessage(`{}`), nil
	}
	var expiresAt *time.Time
	if s, ok := fields["expires_at"].(string); ok {
		exp, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		exp = exp.UTC()
		expiresAt = &exp
		fields["expires_at"] = exp.Format(time.RFC3339Nano)
	}
	if typ == "OAUTH2" {
		if refresh, _ := fields["refresh_token"].(string); refresh == "" {
			expiresAt = nil
		} else if expiresAt == nil {
			expiresAt = &now
		}
	}
	if policies[typ].Raw {
		fields["raw"] = json.RawMessage(input)
	}
	stored, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return stored, expiresAt
}

// TestStoredFormRefuses requires storedForm to cut nothing from JSON that encoding/json would not
// have written for a map, so that the stored form is then encoded instead.
func TestStoredFormRefuses(t *testing.T) {
	for _, in := range []string{
		``, `{`, `[]`, `"x"`, `{}x`, `{"a":1}}`,
		`{"b":"1","a":"2"}`,        // members out of order
		`{"a":"1","a":"2"}`,        // a name twice
		`{"a":{"d":"1","c":"2"}}`,  // a nested object out of order
		`{"a": "1"}`,               // white space
		`{"\u0061":"1"}`,           // an escape in a name
		`{"raw":"1"}`,              // a member encoding/json would replace
		`{,"a":"1"}`, `{"a":"1",}`, // stray commas
		`{"a":"1"`, `{"a":"1\"}`, // unterminated
		`{"a":["1"}`, `{"a":{"b":"1"]}`, // brackets that do not match
		`{"a":"<"}`, `{"a":"&"}`, "{\"a\":\"\u2028\"}", "{\"a\":\"\t\"}", // not escaped as encoding/json escapes
		`{"a":"\/"}`, `{"a":"\u0041"}`, `{"a":"\u0009"}`, `{"a":"\u001F"}`, `{"a":"\ufffd"}`, `{"a":"\x"}`, // escapes it does not write
	} {
		if got, ok := storedForm([]byte(in), "", true); ok {
			t.Errorf("storedForm(%s) = %s, want it refused", in, got)
		}
	}
	if got, ok := storedForm([]byte(`{}`), "", true); !ok || string(got) != `{"raw":{}}` {
		t.Errorf("storedForm({}) = %s, %v", got, ok)
	}
}
