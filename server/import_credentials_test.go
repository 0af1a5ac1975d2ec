package server_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// credentialFields are the fields each credentials variant of an import declares.
var credentialFields = map[string][]string{
	"OAUTH2":    {"type", "access_token", "refresh_token", "expires_at", "config_override"},
	"OAUTH1":    {"type", "oauth_token", "oauth_token_secret"},
	"OAUTH2_CC": {"type", "token", "client_id", "client_secret", "expires_at"},
	"API_KEY":   {"type", "apiKey"},
	"BASIC":     {"type", "username", "password"},
	"TBA":       {"type", "token_id", "token_secret", "config_override"},
	"APP":       {"type", "app_id", "installation_id"},
	"NONE":      {"type"},
}

// modeIntegrations creates one integration per auth mode, named after the mode in lower case.
func modeIntegrations(v *env) {
	for mode := range credentialFields {
		v.integration("dev", strings.ToLower(mode), mode)
	}
}

// credentialsBody is an import into the integration of the credentials' type.
func credentialsBody(mode, credentials string, extra ...string) string {
	pck := strings.ToLower(mode)
	if pck == "" {
		pck = "oauth2"
	}
	s := `{"provider_config_key":"` + pck + `","credentials":` + credentials
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

// foreignFields are the credential fields that errors about credentials of type typ must not
// mention: those of other variants that the request did not send.
func foreignFields(typ string, sent map[string]any) []string {
	var out []string
	for _, fields := range credentialFields {
		for _, f := range fields {
			if f == "type" || slices.Contains(credentialFields[typ], f) || slices.Contains(out, f) {
				continue
			}
			if _, ok := sent[f]; ok {
				continue
			}
			out = append(out, f)
		}
	}
	return out
}

func TestImportCredentialsValidation(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		modeIntegrations(v)
		c := func(field string) fieldError { return at("credentials", field) }
		tests := []struct {
			name  string
			mode  string // the integration to import into; also the credentials' type
			creds string
			want  []fieldError
		}{
			// type
			{"type missing", "", `{"access_token":"t"}`, []fieldError{c("type")}},
			{"type unknown", "", `{"type":"OAUTH3","access_token":"t"}`, []fieldError{c("type")}},
			{"type lower case", "", `{"type":"oauth2","access_token":"t"}`, []fieldError{c("type")}},
			{"type a number", "", `{"type":2,"access_token":"t"}`, []fieldError{c("type")}},
			{"type null", "", `{"type":null,"access_token":"t"}`, []fieldError{c("type")}},
			{"type of another API", "", `{"type":"JWT","privateKey":"k"}`, []fieldError{c("type")}},
			{"credentials empty", "", `{}`, []fieldError{c("type")}},
			{"credentials a string", "", `"t"`, []fieldError{at("credentials")}},
			{"credentials an array", "", `[]`, []fieldError{at("credentials")}},
			{"credentials null", "", `null`, []fieldError{at("credentials")}},

			// OAUTH2
			{"OAUTH2 without access_token", "OAUTH2", `{"type":"OAUTH2"}`, []fieldError{c("access_token").withCode("invalid_type")}},
			{"OAUTH2 empty access_token", "OAUTH2", `{"type":"OAUTH2","access_token":""}`, []fieldError{c("access_token").withCode("too_small")}},
			{"OAUTH2 access_token a number", "OAUTH2", `{"type":"OAUTH2","access_token":1}`, []fieldError{c("access_token").withCode("invalid_type")}},
			{"OAUTH2 access_token over 64 KiB", "OAUTH2", `{"type":"OAUTH2","access_token":"` + strings.Repeat("a", 65537) + `"}`, []fieldError{c("access_token").withCode("too_big")}},
			{"OAUTH2 empty refresh_token", "OAUTH2", `{"type":"OAUTH2","access_token":"t","refresh_token":""}`, []fieldError{c("refresh_token")}},
			{"OAUTH2 expires_at a word", "OAUTH2", `{"type":"OAUTH2","access_token":"t","expires_at":"tomorrow"}`, []fieldError{c("expires_at")}},
			{"OAUTH2 expires_at a date", "OAUTH2", `{"type":"OAUTH2","access_token":"t","expires_at":"2030-01-02"}`, []fieldError{c("expires_at")}},
			{"OAUTH2 expires_at without zone", "OAUTH2", `{"type":"OAUTH2","access_token":"t","expires_at":"2030-01-02T03:04:05"}`, []fieldError{c("expires_at")}},
			{"OAUTH2 expires_at month 13", "OAUTH2", `{"type":"OAUTH2","access_token":"t","expires_at":"2030-13-02T03:04:05Z"}`, []fieldError{c("expires_at")}},
			{"OAUTH2 expires_at a number", "OAUTH2", `{"type":"OAUTH2","access_token":"t","expires_at":1893553445}`, []fieldError{c("expires_at")}},
			{"OAUTH2 unknown key", "OAUTH2", `{"type":"OAUTH2","access_token":"t","scope":"x"}`, []fieldError{unknownKey("scope", "credentials")}},
			{"OAUTH2 with OAUTH1 fields", "OAUTH2", `{"type":"OAUTH2","oauth_token":"t","oauth_token_secret":"s"}`,
				[]fieldError{c("access_token"), unknownKey("oauth_token", "credentials"), unknownKey("oauth_token_secret", "credentials")}},
			{"OAUTH2 config_override unknown key", "OAUTH2", `{"type":"OAUTH2","access_token":"t","config_override":{"client_id":"i","scope":"x"}}`,
				[]fieldError{unknownKey("scope", "credentials", "config_override")}},

			// OAUTH2_CC
			{"OAUTH2_CC without anything", "OAUTH2_CC", `{"type":"OAUTH2_CC"}`, []fieldError{c("token"), c("client_id"), c("client_secret")}},
			{"OAUTH2_CC without token", "OAUTH2_CC", `{"type":"OAUTH2_CC","client_id":"i","client_secret":"s"}`, []fieldError{c("token")}},
			{"OAUTH2_CC without client_id", "OAUTH2_CC", `{"type":"OAUTH2_CC","token":"t","client_secret":"s"}`, []fieldError{c("client_id")}},
			{"OAUTH2_CC without client_secret", "OAUTH2_CC", `{"type":"OAUTH2_CC","token":"t","client_id":"i"}`, []fieldError{c("client_secret")}},
			{"OAUTH2_CC empty token", "OAUTH2_CC", `{"type":"OAUTH2_CC","token":"","client_id":"i","client_secret":"s"}`, []fieldError{c("token").withCode("too_small")}},
			{"OAUTH2_CC empty client_id", "OAUTH2_CC", `{"type":"OAUTH2_CC","token":"t","client_id":"","client_secret":"s"}`, []fieldError{c("client_id").withCode("too_small")}},
			{"OAUTH2_CC empty client_secret", "OAUTH2_CC", `{"type":"OAUTH2_CC","token":"t","client_id":"i","client_secret":""}`, []fieldError{c("client_secret").withCode("too_small")}},
			{"OAUTH2_CC bad expires_at", "OAUTH2_CC", `{"type":"OAUTH2_CC","token":"t","client_id":"i","client_secret":"s","expires_at":"soon"}`, []fieldError{c("expires_at")}},
			{"OAUTH2_CC with access_token", "OAUTH2_CC", `{"type":"OAUTH2_CC","token":"t","client_id":"i","client_secret":"s","access_token":"a"}`,
				[]fieldError{unknownKey("access_token", "credentials")}},

			// OAUTH1
			{"OAUTH1 without anything", "OAUTH1", `{"type":"OAUTH1"}`, []fieldError{c("oauth_token"), c("oauth_token_secret")}},
			{"OAUTH1 without oauth_token_secret", "OAUTH1", `{"type":"OAUTH1","oauth_token":"t"}`, []fieldError{c("oauth_token_secret")}},
			{"OAUTH1 empty oauth_token", "OAUTH1", `{"type":"OAUTH1","oauth_token":"","oauth_token_secret":"s"}`, []fieldError{c("oauth_token").withCode("too_small")}},
			{"OAUTH1 empty oauth_token_secret", "OAUTH1", `{"type":"OAUTH1","oauth_token":"t","oauth_token_secret":""}`, []fieldError{c("oauth_token_secret").withCode("too_small")}},
			{"OAUTH1 unknown key", "OAUTH1", `{"type":"OAUTH1","oauth_token":"t","oauth_token_secret":"s","expires_at":"2030-01-02T03:04:05Z"}`,
				[]fieldError{unknownKey("expires_at", "credentials")}},

			// API_KEY
			{"API_KEY without apiKey", "API_KEY", `{"type":"API_KEY"}`, []fieldError{c("apiKey").withCode("invalid_type")}},
			{"API_KEY empty apiKey", "API_KEY", `{"type":"API_KEY","apiKey":""}`, []fieldError{c("apiKey").withCode("too_small")}},
			{"API_KEY apiKey null", "API_KEY", `{"type":"API_KEY","apiKey":null}`, []fieldError{c("apiKey")}},
			{"API_KEY snake_case key", "API_KEY", `{"type":"API_KEY","api_key":"k"}`, []fieldError{c("apiKey"), unknownKey("api_key", "credentials")}},

			// BASIC
			{"BASIC without anything", "BASIC", `{"type":"BASIC"}`, []fieldError{c("username"), c("password")}},
			{"BASIC without password", "BASIC", `{"type":"BASIC","username":"u"}`, []fieldError{c("password").withCode("invalid_type")}},
			{"BASIC without username", "BASIC", `{"type":"BASIC","password":"p"}`, []fieldError{c("username").withCode("invalid_type")}},
			{"BASIC password a number", "BASIC", `{"type":"BASIC","username":"u","password":1}`, []fieldError{c("password").withCode("invalid_type")}},
			{"BASIC unknown key", "BASIC", `{"type":"BASIC","username":"u","password":"p","apiKey":"k"}`, []fieldError{unknownKey("apiKey", "credentials")}},

			// TBA
			{"TBA without anything", "TBA", `{"type":"TBA"}`, []fieldError{c("token_id"), c("token_secret")}},
			{"TBA empty token_id", "TBA", `{"type":"TBA","token_id":"","token_secret":"s"}`, []fieldError{c("token_id").withCode("too_small")}},
			{"TBA empty token_secret", "TBA", `{"type":"TBA","token_id":"i","token_secret":""}`, []fieldError{c("token_secret").withCode("too_small")}},
			{"TBA config_override a string", "TBA", `{"type":"TBA","token_id":"i","token_secret":"s","config_override":"x"}`, []fieldError{c("config_override")}},
			{"TBA config_override unknown key", "TBA", `{"type":"TBA","token_id":"i","token_secret":"s","config_override":{"realm":"x"}}`,
				[]fieldError{unknownKey("realm", "credentials", "config_override")}},

			// APP
			{"APP without anything", "APP", `{"type":"APP"}`, []fieldError{c("app_id"), c("installation_id")}},
			{"APP empty app_id", "APP", `{"type":"APP","app_id":"","installation_id":"1"}`, []fieldError{c("app_id").withCode("too_small")}},
			{"APP empty installation_id", "APP", `{"type":"APP","app_id":"1","installation_id":""}`, []fieldError{c("installation_id").withCode("too_small")}},
			{"APP unknown key", "APP", `{"type":"APP","app_id":"1","installation_id":"2","private_key":"k"}`, []fieldError{unknownKey("private_key", "credentials")}},

			// NONE
			{"NONE with a token", "NONE", `{"type":"NONE","access_token":"t"}`, []fieldError{unknownKey("access_token", "credentials")}},
			{"NONE with an empty object", "NONE", `{"type":"NONE","config":{}}`, []fieldError{unknownKey("config", "credentials")}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := v.on(t).do(request{body: credentialsBody(tt.mode, tt.creds)})
				got := wantError(t, res, http.StatusBadRequest, "invalid_body")
				checkFieldErrors(t, got.errors, tt.want...)
				sent, _ := decodeAny(tt.creds).(map[string]any)
				typ, _ := sent["type"].(string)
				foreign := foreignFields(typ, sent)
				for _, d := range got.errors {
					if strings.Contains(d.Message, "any schema") || strings.Contains(d.Message, "oneOf") || strings.Contains(d.Message, "anyOf") {
						t.Errorf("error %s reports the union, not the variant", formatDetails(got.errors))
					}
					for _, f := range foreign {
						if slices.Contains(d.Path, f) || strings.Contains(d.Message, `"`+f+`"`) {
							t.Errorf("error %s mentions %q, a field of another variant", formatDetails(got.errors), f)
						}
					}
				}
			})
		}
	})
}

func TestImportCredentialsStored(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		modeIntegrations(v)
		ctx := context.Background()
		if _, err := v.db.CreateIntegration(ctx, store.NewIntegration{
			Environment: "dev", UniqueKey: "netsuite", Provider: "netsuite-tba", AuthMode: "TBA",
			ClientID: "integration-client-id", ClientSecret: "integration-client-secret",
		}); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name      string
			pck       string
			creds     string
			extra     []string
			wantCreds string // without raw
			wantRaw   bool   // raw is the credentials as sent
		}{
			{
				name:      "OAUTH2 minimal",
				pck:       "oauth2",
				creds:     `{"type":"OAUTH2","access_token":"at"}`,
				wantCreds: `{"type":"OAUTH2","access_token":"at"}`,
				wantRaw:   true,
			},
			{
				name:      "OAUTH2 with everything",
				pck:       "oauth2",
				creds:     `{"access_token":"at","refresh_token":"rt","expires_at":"2030-01-02T03:04:05+02:00","config_override":{"client_id":"ci","client_secret":"cs"},"type":"OAUTH2"}`,
				wantCreds: `{"type":"OAUTH2","access_token":"at","refresh_token":"rt","expires_at":"2030-01-02T01:04:05Z","config_override":{"client_id":"ci","client_secret":"cs"}}`,
				wantRaw:   true,
			},
			{
				name:      "OAUTH2 expires_at in UTC with fraction",
				pck:       "oauth2",
				creds:     `{"type":"OAUTH2","access_token":"at","expires_at":"2030-01-02T03:04:05.25Z"}`,
				wantCreds: `{"type":"OAUTH2","access_token":"at","expires_at":"2030-01-02T03:04:05.25Z"}`,
				wantRaw:   true,
			},
			{
				name:      "OAUTH2 expires_at with negative offset",
				pck:       "oauth2",
				creds:     `{"type":"OAUTH2","access_token":"at","expires_at":"2030-01-01T22:30:00-03:30"}`,
				wantCreds: `{"type":"OAUTH2","access_token":"at","expires_at":"2030-01-02T02:00:00Z"}`,
				wantRaw:   true,
			},
			{
				name:      "OAUTH1",
				pck:       "oauth1",
				creds:     `{"type":"OAUTH1","oauth_token":"ot","oauth_token_secret":"os"}`,
				wantCreds: `{"type":"OAUTH1","oauth_token":"ot","oauth_token_secret":"os"}`,
				wantRaw:   true,
			},
			{
				name:      "OAUTH2_CC",
				pck:       "oauth2_cc",
				creds:     `{"type":"OAUTH2_CC","token":"tk","client_id":"ci","client_secret":"cs","expires_at":"2031-06-07T08:09:10+01:00"}`,
				wantCreds: `{"type":"OAUTH2_CC","token":"tk","client_id":"ci","client_secret":"cs","expires_at":"2031-06-07T07:09:10Z"}`,
				wantRaw:   true,
			},
			{
				name:      "API_KEY",
				pck:       "api_key",
				creds:     `{"type":"API_KEY","apiKey":"k-123"}`,
				wantCreds: `{"type":"API_KEY","apiKey":"k-123"}`,
			},
			{
				name:      "BASIC",
				pck:       "basic",
				creds:     `{"type":"BASIC","username":"u","password":"p"}`,
				wantCreds: `{"type":"BASIC","username":"u","password":"p"}`,
			},
			{
				name:      "BASIC with empty strings",
				pck:       "basic",
				creds:     `{"type":"BASIC","username":"","password":""}`,
				wantCreds: `{"type":"BASIC","username":"","password":""}`,
			},
			{
				name:      "TBA",
				pck:       "tba",
				creds:     `{"type":"TBA","token_id":"ti","token_secret":"ts"}`,
				extra:     []string{`"connection_config":{"accountId":"123"}`},
				wantCreds: `{"type":"TBA","token_id":"ti","token_secret":"ts"}`,
			},
			{
				name:      "TBA with config_override",
				pck:       "tba",
				creds:     `{"type":"TBA","token_id":"ti","token_secret":"ts","config_override":{"client_id":"oi","client_secret":"os"}}`,
				extra:     []string{`"connection_config":{"accountId":"123"}`},
				wantCreds: `{"type":"TBA","token_id":"ti","token_secret":"ts","config_override":{"client_id":"oi","client_secret":"os"}}`,
			},
			{
				name:      "TBA of an integration with client credentials",
				pck:       "netsuite",
				creds:     `{"type":"TBA","token_id":"ti","token_secret":"ts"}`,
				extra:     []string{`"connection_config":{"accountId":"123"}`},
				wantCreds: `{"type":"TBA","token_id":"ti","token_secret":"ts"}`,
			},
			{
				name:      "NONE",
				pck:       "none",
				creds:     `{"type":"NONE"}`,
				wantCreds: `{}`,
			},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				connID := fmt.Sprintf("stored-%d", i)
				extra := append([]string{`"connection_id":"` + connID + `"`}, tt.extra...)
				body := `{"provider_config_key":"` + tt.pck + `","credentials":` + tt.creds + "," + strings.Join(extra, ",") + "}"
				res := v.on(t).do(request{body: body})
				if res.status != http.StatusOK {
					t.Fatalf("status %d, want 200: %s", res.status, res.body)
				}
				conn := decodeObject(t, res.body)
				creds, ok := conn["credentials"].(map[string]any)
				if !ok {
					t.Fatalf("credentials = %s, want an object", mustJSON(conn["credentials"]))
				}
				raw, hasRaw := creds["raw"]
				delete(creds, "raw")
				if !jsonEqual(t, creds, tt.wantCreds) {
					t.Errorf("credentials = %s, want %s", mustJSON(creds), tt.wantCreds)
				}
				switch {
				case tt.wantRaw && !hasRaw:
					t.Errorf("credentials have no raw, want raw = %s", tt.creds)
				case tt.wantRaw && !jsonEqual(t, raw, tt.creds):
					t.Errorf("raw = %s, want the input as sent: %s", mustJSON(raw), tt.creds)
				case !tt.wantRaw && hasRaw:
					t.Errorf("credentials have raw = %s, want none", mustJSON(raw))
				}
				if exp, ok := creds["expires_at"]; ok {
					utcTime(t, "credentials.expires_at", exp)
				}
				if strings.Contains(string(res.body), "integration-client-") {
					t.Errorf("response carries the integration's client credentials: %s", res.body)
				}
			})
		}
	})
}

func TestImportCredentialsReplacedOnUpdate(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		modeIntegrations(v)
		tests := []struct {
			name          string
			pck           string
			first, second string
			want          string // credentials after the second import, without raw
		}{
			{
				name:   "OAUTH2 fields left out are gone",
				pck:    "oauth2",
				first:  `{"type":"OAUTH2","access_token":"one","refresh_token":"r1","expires_at":"2030-01-02T03:04:05Z","config_override":{"client_id":"c"}}`,
				second: `{"type":"OAUTH2","access_token":"two"}`,
				want:   `{"type":"OAUTH2","access_token":"two"}`,
			},
			{
				name:   "API_KEY replaced",
				pck:    "api_key",
				first:  `{"type":"API_KEY","apiKey":"one"}`,
				second: `{"type":"API_KEY","apiKey":"two"}`,
				want:   `{"type":"API_KEY","apiKey":"two"}`,
			},
			{
				name:   "BASIC replaced by empty strings",
				pck:    "basic",
				first:  `{"type":"BASIC","username":"u","password":"p"}`,
				second: `{"type":"BASIC","username":"","password":""}`,
				want:   `{"type":"BASIC","username":"","password":""}`,
			},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				vt := v.on(t)
				connID := fmt.Sprintf("replace-%d", i)
				body := func(creds string) string {
					return `{"provider_config_key":"` + tt.pck + `","connection_id":"` + connID + `","credentials":` + creds + `}`
				}
				first := vt.importOK(body(tt.first))
				second := vt.importOK(body(tt.second))
				if mustJSON(first["id"]) != mustJSON(second["id"]) {
					t.Fatalf("second import made connection %v, want an update of %v", second["id"], first["id"])
				}
				creds, _ := second["credentials"].(map[string]any)
				raw, hasRaw := creds["raw"]
				delete(creds, "raw")
				if !jsonEqual(t, creds, tt.want) {
					t.Errorf("credentials = %s, want %s", mustJSON(creds), tt.want)
				}
				if hasRaw && !jsonEqual(t, raw, tt.second) {
					t.Errorf("raw = %s, want the second input %s", mustJSON(raw), tt.second)
				}
			})
		}
	})
}

// TestImportCredentialsStoredBytes requires the exact bytes stored for credentials, through
// POST /connections and POST /connections/batch alike: members in key order with raw among them,
// strings escaped as encoding/json escapes them, expires_at in UTC; and the answer's credentials
// to be those bytes.
func TestImportCredentialsStoredBytes(t *testing.T) {
	t.Parallel()
	const (
		sent = `{"type":"OAUTH2","refresh_token":"rt","access_token":"a<b>&\"c\u00e9\u2028",` +
			`"expires_at":"2030-01-02T03:04:05.50+02:00","config_override":{"client_secret":"cs","client_id":"ci"}}`
		raw = `{"access_token":"a\u003cb\u003e\u0026\"cé\u2028","config_override":{"client_id":"ci","client_secret":"cs"},` +
			`"expires_at":"2030-01-02T03:04:05.50+02:00","refresh_token":"rt","type":"OAUTH2"}`
		stored = `{"access_token":"a\u003cb\u003e\u0026\"cé\u2028","config_override":{"client_id":"ci","client_secret":"cs"},` +
			`"expires_at":"2030-01-02T01:04:05.5Z","raw":` + raw + `,"refresh_token":"rt","type":"OAUTH2"}`
	)
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		modeIntegrations(v)
		ctx := context.Background()
		envID, err := v.db.EnvironmentID(ctx, "dev")
		if err != nil {
			t.Fatal(err)
		}
		one := `{"provider_config_key":"oauth2","connection_id":"bytes-one","credentials":` + sent + `}`
		batched := `{"provider_config_key":"oauth2","connection_id":"bytes-batch","credentials":` + sent + `}`
		for _, tt := range []struct {
			name, path, body, connID string
		}{
			{"POST /connections", "/connections", one, "bytes-one"},
			{"POST /connections/batch", "/connections/batch", `{"connections":[` + batched + `]}`, "bytes-batch"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				res := v.on(t).do(request{path: tt.path, body: tt.body})
				if res.status != http.StatusOK {
					t.Fatalf("status %d, want 200: %s", res.status, res.body)
				}
				got, err := v.db.ConnectionCredentials(ctx, envID, "oauth2", tt.connID)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != stored {
					t.Errorf("stored credentials\n%s\nwant\n%s", got, stored)
				}
				if !strings.Contains(string(res.body), `"credentials":`+stored) {
					t.Errorf("answer %s, want the credentials %s", res.body, stored)
				}
			})
		}
	})
}
