package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/store/storetest"
)

func TestImportGeneratesConnectionID(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		first := v.importOK(validImport)
		second := v.importOK(validImport)
		for _, tt := range []struct {
			name string
			conn map[string]any
		}{{"first", first}, {"second", second}} {
			t.Run(tt.name+" is a UUID", func(t *testing.T) {
				s, _ := tt.conn["connection_id"].(string)
				id, err := uuid.Parse(s)
				if err != nil || s != id.String() {
					t.Fatalf("connection_id %q is not a UUID in canonical form (%v)", s, err)
				}
				if id.Version() != 4 {
					t.Errorf("connection_id %q is a version %d UUID, want a random (version 4) one", s, id.Version())
				}
			})
		}
		t.Run("each import makes a new connection", func(t *testing.T) {
			if first["connection_id"] == second["connection_id"] {
				t.Errorf("both imports got connection_id %v", first["connection_id"])
			}
			if mustJSON(first["id"]) == mustJSON(second["id"]) {
				t.Errorf("both imports got id %v", first["id"])
			}
		})
	})
}

func TestImportUpsertIdentity(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		clk := &clock{now: mustTime(t, "2025-01-01T10:00:00Z")}
		v.db.Now = clk.Now
		v.integration("dev", "github", "OAUTH2")
		v.integration("dev", "gitlab", "OAUTH2")
		v.integration("prod", "github", "OAUTH2")
		prod := v.on(t)
		prod.key = v.apiKey("prod", contract.FullAccess)

		body := func(pck, connID, token string) string {
			return fmt.Sprintf(`{"provider_config_key":%q,"connection_id":%q,"credentials":{"type":"OAUTH2","access_token":%q}}`, pck, connID, token)
		}
		created := v.importOK(body("github", "acme", "one"))
		createdAt := utcTime(t, "created_at", created["created_at"])
		clk.Add(90 * time.Second)

		tests := []struct {
			name     string
			api      *env
			body     string
			sameConn bool
		}{
			{"same environment, integration and connection id", v, body("github", "acme", "two"), true},
			{"another connection id", v, body("github", "acme-2", "two"), false},
			{"connection id differing in case", v, body("github", "ACME", "two"), false},
			{"another integration", v, body("gitlab", "acme", "two"), false},
			{"another environment", prod, body("github", "acme", "two"), false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				clk.Add(time.Minute)
				conn := tt.api.on(t).importOK(tt.body)
				sameID := mustJSON(conn["id"]) == mustJSON(created["id"])
				if sameID != tt.sameConn {
					t.Fatalf("id %v (first import %v): same connection = %v, want %v", conn["id"], created["id"], sameID, tt.sameConn)
				}
				gotCreated := utcTime(t, "created_at", conn["created_at"])
				gotUpdated := utcTime(t, "updated_at", conn["updated_at"])
				if tt.sameConn {
					if !gotCreated.Equal(createdAt) {
						t.Errorf("created_at %s, want the first import's %s", gotCreated, createdAt)
					}
					if !gotUpdated.Equal(clk.Now()) || !gotUpdated.After(createdAt) {
						t.Errorf("updated_at %s, want the time of this import %s", gotUpdated, clk.Now().UTC())
					}
				} else if !gotCreated.Equal(clk.Now()) {
					t.Errorf("created_at %s, want the time of this import %s", gotCreated, clk.Now().UTC())
				}
			})
		}
		t.Run("the other environment's import left the first connection alone", func(t *testing.T) {
			again := v.on(t).importOK(body("github", "acme", "three"))
			if mustJSON(again["id"]) != mustJSON(created["id"]) {
				t.Fatalf("id %v, want %v", again["id"], created["id"])
			}
			if got := utcTime(t, "created_at", again["created_at"]); !got.Equal(createdAt) {
				t.Errorf("created_at %s, want %s", got, createdAt)
			}
		})
	})
}

func TestImportUpdateKeepsOrReplacesFields(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		const initial = `"metadata":{"plan":"pro","seats":5},` +
			`"connection_config":{"subdomain":"acme","instance_url":"https://acme.example"},` +
			`"tags":{"Team":"core"},` +
			`"end_user":{"id":"u1","email":"u1@example.com","display_name":"User One"}`
		const (
			initialMetadata = `{"plan":"pro","seats":5}`
			initialConfig   = `{"subdomain":"acme","instance_url":"https://acme.example"}`
			initialTags     = `{"team":"core","end_user_id":"u1","end_user_email":"u1@example.com","end_user_display_name":"User One"}`
		)
		tests := []struct {
			name                              string
			update                            string // members of the second import besides the ids and credentials
			wantMetadata, wantConfig          string
			wantTags, wantEndUserID           string
			wantEndUserEmail, wantEndUserDisp any
		}{
			{
				name:         "nothing sent keeps everything",
				wantMetadata: initialMetadata, wantConfig: initialConfig, wantTags: initialTags,
				wantEndUserID: "u1", wantEndUserEmail: "u1@example.com", wantEndUserDisp: "User One",
			},
			{
				name:         "metadata replaced, not merged",
				update:       `"metadata":{"seats":6}`,
				wantMetadata: `{"seats":6}`, wantConfig: initialConfig, wantTags: initialTags,
				wantEndUserID: "u1", wantEndUserEmail: "u1@example.com", wantEndUserDisp: "User One",
			},
			{
				name:         "metadata emptied",
				update:       `"metadata":{}`,
				wantMetadata: `{}`, wantConfig: initialConfig, wantTags: initialTags,
				wantEndUserID: "u1", wantEndUserEmail: "u1@example.com", wantEndUserDisp: "User One",
			},
			{
				name:         "connection_config replaced, not merged",
				update:       `"connection_config":{"subdomain":"other"}`,
				wantMetadata: initialMetadata, wantConfig: `{"subdomain":"other"}`, wantTags: initialTags,
				wantEndUserID: "u1", wantEndUserEmail: "u1@example.com", wantEndUserDisp: "User One",
			},
			{
				name:         "tags replaced; the end user is kept",
				update:       `"tags":{"Env":"prod"}`,
				wantMetadata: initialMetadata, wantConfig: initialConfig, wantTags: `{"env":"prod"}`,
				wantEndUserID: "u1", wantEndUserEmail: "u1@example.com", wantEndUserDisp: "User One",
			},
			{
				name:         "end_user replaced along with the tags it yields",
				update:       `"end_user":{"id":"u2"}`,
				wantMetadata: initialMetadata, wantConfig: initialConfig, wantTags: `{"end_user_id":"u2"}`,
				wantEndUserID: "u2", wantEndUserEmail: nil, wantEndUserDisp: nil,
			},
			{
				name:         "everything replaced",
				update:       `"metadata":{"a":[1,2]},"connection_config":{"b":null},"tags":{"x":"1"},"end_user":{"id":"u3","display_name":"Three"}`,
				wantMetadata: `{"a":[1,2]}`, wantConfig: `{"b":null}`, wantTags: `{"x":"1","end_user_id":"u3","end_user_display_name":"Three"}`,
				wantEndUserID: "u3", wantEndUserEmail: nil, wantEndUserDisp: "Three",
			},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				vt := v.on(t)
				ids := fmt.Sprintf(`"provider_config_key":"github","connection_id":"keep-%d"`, i)
				first := vt.importOK(`{` + ids + `,"credentials":{"type":"OAUTH2","access_token":"one"},` + initial + `}`)
				if !jsonEqual(t, first["tags"], initialTags) {
					t.Fatalf("tags after create = %s, want %s", mustJSON(first["tags"]), initialTags)
				}
				second := `{` + ids + `,"credentials":{"type":"OAUTH2","access_token":"two"}`
				if tt.update != "" {
					second += "," + tt.update
				}
				conn := vt.importOK(second + `}`)
				if mustJSON(conn["id"]) != mustJSON(first["id"]) {
					t.Fatalf("id %v, want the first import's %v", conn["id"], first["id"])
				}
				for _, f := range []struct{ field, want string }{
					{"metadata", tt.wantMetadata},
					{"connection_config", tt.wantConfig},
					{"tags", tt.wantTags},
				} {
					if !jsonEqual(t, conn[f.field], f.want) {
						t.Errorf("%s = %s, want %s", f.field, mustJSON(conn[f.field]), f.want)
					}
				}
				endUser, _ := conn["end_user"].(map[string]any)
				if endUser == nil {
					t.Fatalf("end_user = %s, want an end user", mustJSON(conn["end_user"]))
				}
				if endUser["id"] != tt.wantEndUserID || endUser["email"] != tt.wantEndUserEmail || endUser["display_name"] != tt.wantEndUserDisp {
					t.Errorf("end_user = %s, want id %v, email %v, display_name %v",
						mustJSON(endUser), tt.wantEndUserID, tt.wantEndUserEmail, tt.wantEndUserDisp)
				}
				if cred, _ := conn["credentials"].(map[string]any); cred["access_token"] != "two" {
					t.Errorf("credentials = %s, want the second import's", mustJSON(conn["credentials"]))
				}
			})
		}
	})
}

func TestImportKeepsJSONValues(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		tests := []struct {
			name  string
			field string
			value string
		}{
			{"nested metadata", "metadata", `{"a":{"b":[1,"two",true,null,{"c":"d"}]},"e":""}`},
			{"1000 members", "metadata", manyMembers(1000)},
			{"large and exact numbers", "metadata", `{"big":12345678901234567890,"neg":-7,"frac":0.5}`},
			{"unicode", "metadata", `{"name":"Zoë ✓ 日本","emoji":"🙂"}`},
			{"connection_config", "connection_config", `{"instance_url":"https://x.example/a?b=c&d=e","flags":[false]}`},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				body := fmt.Sprintf(`{"provider_config_key":"github","connection_id":"json-%d","credentials":{"type":"OAUTH2","access_token":"t"},%q:%s}`,
					i, tt.field, tt.value)
				conn := v.on(t).importOK(body)
				if !jsonEqual(t, conn[tt.field], tt.value) {
					t.Errorf("%s = %s, want %s", tt.field, mustJSON(conn[tt.field]), tt.value)
				}
			})
		}
	})
}
