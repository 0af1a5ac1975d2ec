package server_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/credport/credport/store/storetest"
)

// tagsObject is a JSON object of n tags k0..k(n-1) with value "v".
func tagsObject(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"k%d":"v"`, i)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// tagsBody is an import into "github" with the given extra members.
func tagsBody(connID string, members ...string) string {
	s := `{"provider_config_key":"github","connection_id":"` + connID + `","credentials":{"type":"OAUTH2","access_token":"t"}`
	for _, m := range members {
		s += "," + m
	}
	return s + "}"
}

func TestImportTagsInvalid(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		key65 := "k" + strings.Repeat("x", 64)
		long := strings.Repeat("v", 256)
		tests := []struct {
			name    string
			members []string
			want    []fieldError
			// either, when set, is the one error expected instead of want: at the object path
			// either[:len-2] and the key either[len-2] or either[len-1], as the key is spelled
			// in the request or lower-cased.
			either []string
		}{
			{name: "11 tags", members: []string{`"tags":` + tagsObject(11)}, want: []fieldError{at("tags")}},
			{name: "key starting with a digit", members: []string{`"tags":{"1team":"x"}`}, want: []fieldError{at("tags", "1team").withCode("invalid_key")}},
			{name: "key starting with an underscore", members: []string{`"tags":{"_team":"x"}`}, want: []fieldError{at("tags", "_team").withCode("invalid_key")}},
			{name: "key with a space", members: []string{`"tags":{"my team":"x"}`}, want: []fieldError{at("tags", "my team").withCode("invalid_key")}},
			{name: "key with a colon", members: []string{`"tags":{"team:a":"x"}`}, want: []fieldError{at("tags", "team:a").withCode("invalid_key")}},
			{name: "key non-ASCII", members: []string{`"tags":{"équipe":"x"}`}, want: []fieldError{at("tags", "équipe").withCode("invalid_key")}},
			{name: "empty key", members: []string{`"tags":{"":"x"}`}, want: []fieldError{at("tags", "").withCode("invalid_key")}},
			{name: "key of 65 characters", members: []string{`"tags":{"` + key65 + `":"x"}`}, want: []fieldError{at("tags", key65).withCode("invalid_key")}},
			{name: "empty value", members: []string{`"tags":{"team":""}`}, want: []fieldError{at("tags", "team")}},
			{name: "value of 256 characters", members: []string{`"tags":{"team":"` + long + `"}`}, want: []fieldError{at("tags", "team")}},
			{name: "number value", members: []string{`"tags":{"team":1}`}, want: []fieldError{at("tags", "team")}},
			{name: "boolean value", members: []string{`"tags":{"team":true}`}, want: []fieldError{at("tags", "team")}},
			{name: "null value", members: []string{`"tags":{"team":null}`}, want: []fieldError{at("tags", "team")}},
			{name: "object value", members: []string{`"tags":{"team":{}}`}, want: []fieldError{at("tags", "team")}},
			{name: "keys equal after lower-casing", members: []string{`"tags":{"Team":"a","team":"b"}`}, either: []string{"tags", "Team", "team"}},
			{name: "keys equal after lower-casing, neither lower", members: []string{`"tags":{"TEAM":"a","Team":"b"}`}, either: []string{"tags", "TEAM", "Team"}},
			{name: "end_user_email not an email", members: []string{`"tags":{"end_user_email":"nope"}`}, want: []fieldError{at("tags", "end_user_email")}},
			{name: "end_user_email with a display name", members: []string{`"tags":{"end_user_email":"A <a@example.com>"}`}, want: []fieldError{at("tags", "end_user_email")}},
			{name: "END_USER_EMAIL not an email", members: []string{`"tags":{"END_USER_EMAIL":"nope"}`}, either: []string{"tags", "END_USER_EMAIL", "end_user_email"}},

			// end_user
			{name: "end_user without id", members: []string{`"end_user":{"email":"a@example.com"}`}, want: []fieldError{at("end_user", "id")}},
			{name: "end_user empty id", members: []string{`"end_user":{"id":""}`}, want: []fieldError{at("end_user", "id")}},
			{name: "end_user id of 256 characters", members: []string{`"end_user":{"id":"` + long + `"}`}, want: []fieldError{at("end_user", "id")}},
			{name: "end_user id a number", members: []string{`"end_user":{"id":1}`}, want: []fieldError{at("end_user", "id")}},
			{name: "end_user unknown key", members: []string{`"end_user":{"id":"u","organization":{"id":"o"}}`}, want: []fieldError{unknownKey("organization", "end_user")}},
			{name: "end_user camelCase key", members: []string{`"end_user":{"id":"u","displayName":"U"}`}, want: []fieldError{unknownKey("displayName", "end_user")}},
			{name: "end_user email not an email", members: []string{`"end_user":{"id":"u","email":"nope"}`}, want: []fieldError{at("end_user", "email")}},
			{name: "end_user display_name of 256 characters", members: []string{`"end_user":{"id":"u","display_name":"` + long + `"}`}, want: []fieldError{at("end_user", "display_name")}},
			{name: "end_user tags with a bad key", members: []string{`"end_user":{"id":"u","tags":{"1x":"y"}}`}, want: []fieldError{at("end_user", "tags", "1x").withCode("invalid_key")}},
			{name: "end_user tags with a number value", members: []string{`"end_user":{"id":"u","tags":{"plan":3}}`}, want: []fieldError{at("end_user", "tags", "plan")}},
			{name: "end_user tags with an empty value", members: []string{`"end_user":{"id":"u","tags":{"plan":""}}`}, want: []fieldError{at("end_user", "tags", "plan")}},
			{name: "end_user tags keys equal after lower-casing", members: []string{`"end_user":{"id":"u","tags":{"Plan":"a","plan":"b"}}`},
				either: []string{"end_user", "tags", "Plan", "plan"}},

			// the merged set
			{name: "end_user tags alone over 10", members: []string{`"end_user":{"id":"u","tags":` + tagsObject(10) + `}`}, want: []fieldError{at("tags")}},
			{name: "tags and end_user over 10", members: []string{`"tags":` + tagsObject(8), `"end_user":{"id":"u","email":"u@example.com","display_name":"U"}`},
				want: []fieldError{at("tags")}},
			{name: "tags and end_user tags over 10", members: []string{`"tags":` + tagsObject(5), `"end_user":{"id":"u","tags":{"a":"1","b":"2","c":"3","d":"4","e":"5"}}`},
				want: []fieldError{at("tags")}},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := v.on(t).do(request{body: tagsBody(fmt.Sprintf("bad-%d", i), tt.members...)})
				got := wantError(t, res, http.StatusBadRequest, "invalid_body")
				if n := len(tt.either); n > 0 {
					object, key1, key2 := tt.either[:n-2], tt.either[n-2], tt.either[n-1]
					if len(got.errors) != 1 {
						t.Fatalf("errors %s, want one at %q + %q or %q", formatDetails(got.errors), object, key1, key2)
					}
					p := got.errors[0].Path
					if !equalPath(p, slices.Concat(object, []string{key1})) && !equalPath(p, slices.Concat(object, []string{key2})) {
						t.Errorf("error %s, want it at %q + %q or %q", formatDetails(got.errors), object, key1, key2)
					}
					return
				}
				checkFieldErrors(t, got.errors, tt.want...)
			})
		}
	})
}

func TestImportTagsStored(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		key64 := "K" + strings.Repeat("x", 63)
		value255 := strings.Repeat("V", 255)
		id255 := strings.Repeat("u", 255)
		tests := []struct {
			name        string
			members     []string
			wantTags    string
			wantEndUser string // "" when none is expected
		}{
			{name: "keys lower-cased, values kept", members: []string{`"tags":{"Team":"Core","ENV":"Prod"}`}, wantTags: `{"team":"Core","env":"Prod"}`},
			{name: "every allowed key character", members: []string{`"tags":{"a-B_c.d/E9":"x"}`}, wantTags: `{"a-b_c.d/e9":"x"}`},
			{name: "10 tags", members: []string{`"tags":` + tagsObject(10)}, wantTags: tagsObject(10)},
			{name: "empty tags", members: []string{`"tags":{}`}, wantTags: `{}`},
			{name: "key of 64 and value of 255 characters", members: []string{`"tags":{"` + key64 + `":"` + value255 + `"}`},
				wantTags: `{"` + strings.ToLower(key64) + `":"` + value255 + `"}`},
			{name: "end_user_email tag", members: []string{`"tags":{"end_user_email":"a.b+c@example.com"}`}, wantTags: `{"end_user_email":"a.b+c@example.com"}`},
			{name: "END_USER_EMAIL tag lower-cased", members: []string{`"tags":{"END_USER_EMAIL":"a@example.com"}`}, wantTags: `{"end_user_email":"a@example.com"}`},
			{
				name:        "end_user yields tags",
				members:     []string{`"end_user":{"id":"u1","email":"U1@Example.com","display_name":"User One","tags":{"Plan":"Pro","region":"eu"}}`},
				wantTags:    `{"end_user_id":"u1","end_user_email":"U1@Example.com","end_user_display_name":"User One","plan":"Pro","region":"eu"}`,
				wantEndUser: `{"id":"u1","email":"U1@Example.com","display_name":"User One","tags":{"Plan":"Pro","region":"eu"}}`,
			},
			{
				name:        "end_user with only an id",
				members:     []string{`"end_user":{"id":"u1"}`},
				wantTags:    `{"end_user_id":"u1"}`,
				wantEndUser: `{"id":"u1"}`,
			},
			{
				name:        "end_user id of 255 characters",
				members:     []string{`"end_user":{"id":"` + id255 + `"}`},
				wantTags:    `{"end_user_id":"` + id255 + `"}`,
				wantEndUser: `{"id":"` + id255 + `"}`,
			},
			{
				name:        "explicit tags override end_user tags",
				members:     []string{`"tags":{"end_user_id":"override","Plan":"Free"}`, `"end_user":{"id":"u1","tags":{"plan":"Pro","region":"eu"}}`},
				wantTags:    `{"end_user_id":"override","plan":"Free","region":"eu"}`,
				wantEndUser: `{"id":"u1","tags":{"plan":"Pro","region":"eu"}}`,
			},
			{
				name:        "explicit tag overrides an end_user tag of another case",
				members:     []string{`"tags":{"REGION":"us"}`, `"end_user":{"id":"u1","tags":{"Region":"eu"}}`},
				wantTags:    `{"end_user_id":"u1","region":"us"}`,
				wantEndUser: `{"id":"u1","tags":{"Region":"eu"}}`,
			},
			{
				name:        "merged set of exactly 10",
				members:     []string{`"tags":` + tagsObject(7), `"end_user":{"id":"u","email":"u@example.com","display_name":"U"}`},
				wantTags:    `{"k0":"v","k1":"v","k2":"v","k3":"v","k4":"v","k5":"v","k6":"v","end_user_id":"u","end_user_email":"u@example.com","end_user_display_name":"U"}`,
				wantEndUser: `{"id":"u","email":"u@example.com","display_name":"U"}`,
			},
			{
				name:        "overridden keys count once",
				members:     []string{`"tags":` + tagsObject(9) + ``, `"end_user":{"id":"u","tags":{"k0":"w"}}`},
				wantTags:    `{"k0":"v","k1":"v","k2":"v","k3":"v","k4":"v","k5":"v","k6":"v","k7":"v","k8":"v","end_user_id":"u"}`,
				wantEndUser: `{"id":"u","tags":{"k0":"w"}}`,
			},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				conn := v.on(t).importOK(tagsBody(fmt.Sprintf("tags-%d", i), tt.members...))
				if !jsonEqual(t, conn["tags"], tt.wantTags) {
					t.Errorf("tags = %s, want %s", mustJSON(conn["tags"]), tt.wantTags)
				}
				checkEndUser(t, conn["end_user"], tt.wantEndUser)
			})
		}
	})
}

// checkEndUser compares an end_user that an import answered with want; null members count as
// absent, and so do tags of {}, which the answer must hold when the end user has no tags.
func checkEndUser(t *testing.T, got any, want string) {
	t.Helper()
	if want == "" {
		if got != nil {
			t.Errorf("end_user = %s, want none", mustJSON(got))
		}
		return
	}
	m, ok := got.(map[string]any)
	if !ok {
		t.Fatalf("end_user = %s, want %s", mustJSON(got), want)
	}
	if tags, isObject := m["tags"].(map[string]any); !isObject {
		t.Errorf("end_user.tags = %s, want an object", mustJSON(m["tags"]))
	} else if len(tags) == 0 {
		delete(m, "tags")
	}
	trimmed := map[string]any{}
	for k, val := range m {
		if val != nil {
			trimmed[k] = val
		}
	}
	if !jsonEqual(t, trimmed, want) {
		t.Errorf("end_user = %s, want %s", mustJSON(got), want)
	}
}

func TestImportTagsOnUpdate(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		const first = `"tags":{"Team":"core"},"end_user":{"id":"u1","email":"u1@example.com","tags":{"plan":"pro"}}`
		tests := []struct {
			name   string
			update []string
			// rejected, when set, is an update sent first that must fail at ["tags"]
			rejected    []string
			wantTags    string
			wantEndUser string
		}{
			{
				name:        "neither tags nor end_user keeps the stored tags",
				wantTags:    `{"team":"core","end_user_id":"u1","end_user_email":"u1@example.com","plan":"pro"}`,
				wantEndUser: `{"id":"u1","email":"u1@example.com","tags":{"plan":"pro"}}`,
			},
			{
				name:        "tags alone replace every stored tag",
				update:      []string{`"tags":{"env":"prod"}`},
				wantTags:    `{"env":"prod"}`,
				wantEndUser: `{"id":"u1","email":"u1@example.com","tags":{"plan":"pro"}}`,
			},
			{
				name:        "empty tags clear them",
				update:      []string{`"tags":{}`},
				wantTags:    `{}`,
				wantEndUser: `{"id":"u1","email":"u1@example.com","tags":{"plan":"pro"}}`,
			},
			{
				name:        "end_user alone yields the only tags",
				update:      []string{`"end_user":{"id":"u2","display_name":"Two"}`},
				wantTags:    `{"end_user_id":"u2","end_user_display_name":"Two"}`,
				wantEndUser: `{"id":"u2","display_name":"Two"}`,
			},
			{
				name:        "both merge afresh",
				update:      []string{`"tags":{"Env":"prod","end_user_id":"x"}`, `"end_user":{"id":"u3","tags":{"tier":"1"}}`},
				wantTags:    `{"env":"prod","end_user_id":"x","tier":"1"}`,
				wantEndUser: `{"id":"u3","tags":{"tier":"1"}}`,
			},
			{
				name:        "an invalid update leaves the stored tags",
				rejected:    []string{`"tags":` + tagsObject(11)},
				wantTags:    `{"team":"core","end_user_id":"u1","end_user_email":"u1@example.com","plan":"pro"}`,
				wantEndUser: `{"id":"u1","email":"u1@example.com","tags":{"plan":"pro"}}`,
			},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				vt := v.on(t)
				connID := fmt.Sprintf("update-%d", i)
				vt.importOK(tagsBody(connID, first))
				if tt.rejected != nil {
					res := vt.do(request{body: tagsBody(connID, tt.rejected...)})
					got := wantError(t, res, http.StatusBadRequest, "invalid_body")
					checkFieldErrors(t, got.errors, at("tags"))
				}
				conn := vt.importOK(tagsBody(connID, tt.update...))
				if !jsonEqual(t, conn["tags"], tt.wantTags) {
					t.Errorf("tags = %s, want %s", mustJSON(conn["tags"]), tt.wantTags)
				}
				checkEndUser(t, conn["end_user"], tt.wantEndUser)
			})
		}
	})
}
