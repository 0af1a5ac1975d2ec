package server_test

import (
	"encoding/json"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/credport/credport/store/storetest"
)

// TestImportEndUserTagsObject checks that an import answers the tags of an end user that has none
// as {}, which the seed's ConnectionFull requires (an object), not null; the harness validates
// every import answer against the seed, and this checks that validation would catch a null.
func TestImportEndUserTagsObject(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "API_KEY")
		for _, c := range []struct {
			name, endUser, want string
		}{
			{"only an id", `{"id":"u1"}`, `{}`},
			{"email and display name", `{"id":"u2","email":"u2@example.com","display_name":"U"}`, `{}`},
			{"tags", `{"id":"u3","tags":{"Plan":"pro"}}`, `{"Plan":"pro"}`},
		} {
			t.Run(c.name, func(t *testing.T) {
				res := v.on(t).do(request{body: `{"provider_config_key":"github","connection_id":"acme","credentials":{"type":"API_KEY","apiKey":"secret-api-key-1"},"end_user":` + c.endUser + `}`})
				if res.status != 200 {
					t.Fatalf("status %d: %s", res.status, res.body)
				}
				conn := decodeObject(t, res.body)
				endUser := conn["end_user"].(map[string]any)
				if !jsonEqual(t, endUser["tags"], c.want) {
					t.Errorf("end_user.tags = %s, want %s", mustJSON(endUser["tags"]), c.want)
				}

				doc, err := seedContract()
				if err != nil {
					t.Fatal(err)
				}
				endUser["tags"] = nil
				var withNull any
				if err := json.Unmarshal([]byte(mustJSON(conn)), &withNull); err != nil {
					t.Fatal(err)
				}
				if doc.Components.Schemas["ConnectionFull"].Value.VisitJSON(withNull, openapi3.MultiErrors()) == nil {
					t.Error("the seed's ConnectionFull accepts end_user.tags null: the harness's seed check proves nothing")
				}
			})
		}
	})
}
