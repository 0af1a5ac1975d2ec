package server_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/server"
	"github.com/credport/credport/store/storetest"
)

const (
	scopeIntegrationsList            = "environment:integrations:list"
	scopeIntegrationsRead            = "environment:integrations:read"
	scopeIntegrationsReadCredentials = "environment:integrations:read_credentials"
	scopeIntegrationsCreate          = "environment:integrations:create"
	scopeIntegrationsUpdate          = "environment:integrations:update"
	scopeIntegrationsDelete          = "environment:integrations:delete"
	logoBase                         = "https://app.nango.dev/images/template-logos/"
)

// isoMillis matches JavaScript's Date.toISOString.
var isoMillis = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`)

var (
	appKeyOnce sync.Once
	appKeyPEM  string
)

// testAppKeyPEM is a GitHub App private key as GitHub issues it (PKCS#1 PEM).
func testAppKeyPEM(t *testing.T) string {
	t.Helper()
	appKeyOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		appKeyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	})
	return appKeyPEM
}

// integrationsAPI sends one integrations request the way Nango's SDK does.
func (v *env) integrationsAPI(method, path, body string) response {
	v.t.Helper()
	return v.do(request{method: method, path: path, body: body, header: sdkHeaders()})
}

// createIntegrationOK posts body to /integrations, requires 200 and returns data.
func (v *env) createIntegrationOK(body string) map[string]any {
	v.t.Helper()
	res := v.integrationsAPI(http.MethodPost, "/integrations", body)
	if res.status != http.StatusOK {
		v.t.Fatalf("create integration: status %d, want 200: %s\nbody sent: %s", res.status, res.body, body)
	}
	return integrationData(v.t, res)
}

// integrationData is the data object of an integration answer.
func integrationData(t *testing.T, res response) map[string]any {
	t.Helper()
	data, ok := decodeObject(t, res.body)["data"].(map[string]any)
	if !ok {
		t.Fatalf("no data object: %s", res.body)
	}
	return data
}

const githubIntegration = `{"provider":"github","unique_key":"gh","credentials":{"type":"OAUTH2","client_id":"gh-client-id","client_secret":"gh-client-secret-1234","scopes":"repo,user:email"}}`

func TestCreateIntegration(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		creator := v.on(t)
		creator.key = v.apiKey("dev", scopeIntegrationsCreate)

		t.Run("a catalog provider: the answer as the reference formats it", func(t *testing.T) {
			got := creator.on(t).createIntegrationOK(githubIntegration)
			// As toISOString writes them: always three digits of milliseconds.
			for _, field := range []string{"created_at", "updated_at"} {
				if s, _ := got[field].(string); !isoMillis.MatchString(s) {
					t.Errorf("%s %v, want the toISOString format", field, got[field])
				}
			}
			if got["created_at"] != got["updated_at"] {
				t.Errorf("created_at %v, updated_at %v: want equal on create", got["created_at"], got["updated_at"])
			}
			delete(got, "created_at")
			delete(got, "updated_at")
			if !jsonEqual(t, got, `{"unique_key":"gh","provider":"github","display_name":"GitHub (User OAuth)",
				"logo":"`+logoBase+`github.svg","forward_webhooks":true}`) {
				t.Errorf("data %s", mustJSON(got))
			}
			in, err := v.db.FindIntegration(context.Background(), mustEnvID(t, v, "dev"), "gh")
			if err != nil {
				t.Fatal(err)
			}
			// The catalog's mode and token endpoint, as the CLI would store them.
			if in.AuthMode != "OAUTH2" || in.ClientID != "gh-client-id" || !in.HasClientSecret ||
				in.TokenURL != "https://github.com/login/oauth/access_token" || in.TokenAuth != "body" || in.Scopes != "repo,user:email" {
				t.Errorf("stored %+v", in)
			}
			secret, err := v.db.IntegrationClientSecret(context.Background(), in)
			if err != nil || secret != "gh-client-secret-1234" {
				t.Errorf("client secret %q, %v", secret, err)
			}
		})
		t.Run("display name, webhooks off, token extensions", func(t *testing.T) {
			got := creator.on(t).createIntegrationOK(`{"provider":"linear","unique_key":"lin","display_name":"Our Linear","forward_webhooks":false,
				"credentials":{"type":"OAUTH2","client_id":"lin-id","client_secret":"lin-secret-5678"},
				"token_url":"https://auth.example.test/token","token_auth":"basic"}`)
			if got["display_name"] != "Our Linear" || got["forward_webhooks"] != false {
				t.Errorf("data %s", mustJSON(got))
			}
			in, err := v.db.FindIntegration(context.Background(), mustEnvID(t, v, "dev"), "lin")
			if err != nil || in.TokenURL != "https://auth.example.test/token" || in.TokenAuth != "basic" {
				t.Errorf("stored %+v, %v", in, err)
			}
		})
		t.Run("a provider outside the catalog takes auth_mode", func(t *testing.T) {
			got := creator.on(t).createIntegrationOK(`{"provider":"acme-crm","unique_key":"acme","auth_mode":"API_KEY"}`)
			if got["display_name"] != "acme-crm" || got["logo"] != logoBase+"acme-crm.svg" {
				t.Errorf("data %s", mustJSON(got))
			}
			in, err := v.db.FindIntegration(context.Background(), mustEnvID(t, v, "dev"), "acme")
			if err != nil || in.AuthMode != "API_KEY" {
				t.Errorf("stored %+v, %v", in, err)
			}
		})
		t.Run("APP", func(t *testing.T) {
			creator.on(t).createIntegrationOK(`{"provider":"github-app","unique_key":"gh-app","credentials":{"type":"APP","app_id":"12345",
				"app_link":"https://github.com/apps/acme","private_key":` + mustJSON(testAppKeyPEM(t)) + `}}`)
			in, err := v.db.FindIntegration(context.Background(), mustEnvID(t, v, "dev"), "gh-app")
			if err != nil || in.AuthMode != "APP" || in.AppID != "12345" || !in.HasPrivateKey || in.AppLink != "https://github.com/apps/acme" {
				t.Errorf("stored %+v, %v", in, err)
			}
		})
		t.Run("a provider without credentials", func(t *testing.T) {
			creator.on(t).createIntegrationOK(`{"provider":"openai","unique_key":"openai"}`)
		})

		errorCases := []struct {
			name    string
			body    string
			message string
			errs    []fieldError
		}{
			{name: "unknown provider", body: `{"provider":"nope","unique_key":"x"}`, errs: []fieldError{at("provider").withCode("invalid_string")}},
			{name: "credentials of another type", body: `{"provider":"github","unique_key":"x","credentials":{"type":"OAUTH1","client_id":"a","client_secret":"b"}}`,
				message: "incompatible credentials auth type and provider auth"},
			{name: "missing credentials", body: `{"provider":"github","unique_key":"x"}`, message: "Missing credentials"},
			{name: "credentials for a provider without", body: `{"provider":"openai","unique_key":"x","credentials":{"type":"OAUTH2","client_id":"a","client_secret":"b"}}`,
				message: "incompatible credentials auth type and provider auth"},
			{name: "duplicate key", body: githubIntegration, errs: []fieldError{at("uniqueKey").withCode("invalid_string")}},
			{name: "bad unique key", body: `{"provider":"github","unique_key":"a/b"}`, errs: []fieldError{at("unique_key")}},
			{name: "bad provider name", body: `{"provider":"a b","unique_key":"x","auth_mode":"NONE"}`, errs: []fieldError{at("provider")}},
			{name: "unknown field", body: `{"provider":"openai","unique_key":"x","integration_config":{}}`, errs: []fieldError{unknownKey("integration_config")}},
			{name: "unknown credentials type", body: `{"provider":"github","unique_key":"x","credentials":{"type":"CUSTOM"}}`, errs: []fieldError{at("credentials", "type").withCode("invalid_enum_value")}},
			{name: "no client secret", body: `{"provider":"github","unique_key":"x","credentials":{"type":"OAUTH2","client_id":"a"}}`,
				errs: []fieldError{at("credentials", "client_secret").withCode("invalid_type")}},
			{name: "app fields on OAUTH2", body: `{"provider":"github","unique_key":"x","credentials":{"type":"OAUTH2","client_id":"a","client_secret":"b","app_id":"1"}}`,
				errs: []fieldError{at("credentials", "app_id").withCode("unrecognized_keys")}},
			{name: "webhook_secret", body: `{"provider":"github","unique_key":"x","credentials":{"type":"OAUTH2","client_id":"a","client_secret":"b","webhook_secret":"w"}}`,
				errs: []fieldError{unknownKey("webhook_secret", "credentials")}},
			{name: "bad scopes", body: `{"provider":"github","unique_key":"x","credentials":{"type":"OAUTH2","client_id":"a","client_secret":"b","scopes":"a b"}}`,
				errs: []fieldError{at("credentials", "scopes")}},
			{name: "bad private key", body: `{"provider":"github-app","unique_key":"x","credentials":{"type":"APP","app_id":"1","app_link":"l","private_key":"not a key"}}`,
				errs: []fieldError{at("credentials", "private_key")}},
			{name: "auth_mode against the catalog", body: `{"provider":"openai","unique_key":"x","auth_mode":"BASIC"}`, errs: []fieldError{at("auth_mode").withCode("invalid_enum_value")}},
			{name: "token_url without OAuth 2", body: `{"provider":"openai","unique_key":"x","token_url":"https://a.test/t"}`, errs: []fieldError{at("token_url")}},
			{name: "bad token_url", body: `{"provider":"github","unique_key":"x","credentials":{"type":"OAUTH2","client_id":"a","client_secret":"b"},"token_url":"ftp://a.test"}`,
				errs: []fieldError{at("token_url")}},
		}
		for _, tc := range errorCases {
			t.Run(tc.name, func(t *testing.T) {
				e := wantError(t, creator.on(t).integrationsAPI(http.MethodPost, "/integrations", tc.body), http.StatusBadRequest, "invalid_body")
				if tc.message != "" && e.message != tc.message {
					t.Errorf("message %q, want %q", e.message, tc.message)
				}
				if tc.errs != nil {
					checkFieldErrors(t, e.errors, tc.errs...)
				}
			})
		}
		t.Run("a query string", func(t *testing.T) {
			wantError(t, creator.on(t).integrationsAPI(http.MethodPost, "/integrations?x=1", `{"provider":"openai","unique_key":"q"}`),
				http.StatusBadRequest, "invalid_query_params")
		})
		t.Run("nothing stored by a refusal", func(t *testing.T) {
			list, err := v.db.ListEnvironmentIntegrations(context.Background(), mustEnvID(t, v, "dev"))
			if err != nil || len(list) != 5 {
				t.Errorf("%d integrations, %v; want 5", len(list), err)
			}
		})
	})
}

func TestGetIntegration(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.createIntegrationOK(githubIntegration)
		v.createIntegrationOK(`{"provider":"github-app","unique_key":"gh-app","credentials":{"type":"APP","app_id":"12345",
			"app_link":"https://github.com/apps/acme","private_key":` + mustJSON(testAppKeyPEM(t)) + `}}`)
		v.createIntegrationOK(`{"provider":"twitter","unique_key":"tw","credentials":{"type":"OAUTH1","client_id":"tw-id","client_secret":"tw-secret-9999"}}`)
		v.createIntegrationOK(`{"provider":"openai","unique_key":"openai"}`)
		reader := v.on(t)
		reader.key = v.apiKey("dev", scopeIntegrationsRead)
		credReader := v.on(t)
		credReader.key = v.apiKey("dev", scopeIntegrationsReadCredentials)
		prod := v.on(t)
		prod.key = v.apiKey("prod", contract.FullAccess)
		get := func(api *env, path string) response { return api.integrationsAPI(http.MethodGet, path, "") }

		t.Run("without include: neither credentials nor webhook_url", func(t *testing.T) {
			res := get(credReader.on(t), "/integrations/gh")
			if res.status != http.StatusOK || res.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("%d %v %s", res.status, res.header, res.body)
			}
			data := integrationData(t, res)
			wantIntegrationKeys(t, data)
			if data["unique_key"] != "gh" || data["display_name"] != "GitHub (User OAuth)" {
				t.Errorf("data %s", mustJSON(data))
			}
		})
		t.Run("credentials for read_credentials", func(t *testing.T) {
			data := integrationData(t, get(credReader.on(t), "/integrations/gh?include=credentials"))
			wantIntegrationKeys(t, data, "credentials")
			if !jsonEqual(t, data["credentials"], `{"type":"OAUTH2","client_id":"gh-client-id","client_secret":"gh-client-secret-1234",
				"scopes":"repo,user:email","webhook_secret":null}`) {
				t.Errorf("credentials %s", mustJSON(data["credentials"]))
			}
			data = integrationData(t, get(v.on(t), "/integrations/tw?include=credentials"))
			if !jsonEqual(t, data["credentials"], `{"type":"OAUTH1","client_id":"tw-id","client_secret":"tw-secret-9999","scopes":null,"webhook_secret":null}`) {
				t.Errorf("OAUTH1 credentials %s", mustJSON(data["credentials"]))
			}
		})
		t.Run("APP credentials with the key in PEM", func(t *testing.T) {
			data := integrationData(t, get(v.on(t), "/integrations/gh-app?include=credentials"))
			creds, _ := data["credentials"].(map[string]any)
			key, _ := creds["private_key"].(string)
			if creds["type"] != "APP" || creds["app_id"] != "12345" || creds["app_link"] != "https://github.com/apps/acme" ||
				strings.TrimSpace(key) != strings.TrimSpace(testAppKeyPEM(t)) {
				t.Errorf("credentials %s", mustJSON(creds))
			}
		})
		t.Run("credentials null for a mode without", func(t *testing.T) {
			data := integrationData(t, get(v.on(t), "/integrations/openai?include=credentials"))
			if c, ok := data["credentials"]; !ok || c != nil {
				t.Errorf("credentials %v (present %v), want null", c, ok)
			}
		})
		t.Run("read only: 200 without credentials", func(t *testing.T) {
			res := get(reader.on(t), "/integrations/gh?include=credentials")
			wantIntegrationKeys(t, integrationData(t, res))
			if strings.Contains(string(res.body), "gh-client-secret-1234") {
				t.Error("the secret was sent")
			}
		})
		t.Run("webhook, given once or repeated", func(t *testing.T) {
			data := integrationData(t, get(v.on(t), "/integrations/gh?include=webhook"))
			wantIntegrationKeys(t, data, "webhook_url")
			if data["webhook_url"] != nil {
				t.Errorf("webhook_url %v", data["webhook_url"])
			}
			wantIntegrationKeys(t, integrationData(t, get(v.on(t), "/integrations/gh?include=webhook&include=credentials")), "webhook_url", "credentials")
		})
		t.Run("bad include", func(t *testing.T) {
			wantError(t, get(v.on(t), "/integrations/gh?include=secrets"), http.StatusBadRequest, "invalid_query_params")
		})
		t.Run("unknown query key", func(t *testing.T) {
			e := wantError(t, get(v.on(t), "/integrations/gh?foo=1"), http.StatusBadRequest, "invalid_query_params")
			checkFieldErrors(t, e.errors, unknownKey("foo").withCode("unrecognized_keys"))
		})
		t.Run("unknown", func(t *testing.T) {
			e := wantError(t, get(v.on(t), "/integrations/nope"), http.StatusNotFound, "not_found")
			if e.message != `Integration "nope" does not exist` {
				t.Errorf("message %q", e.message)
			}
		})
		t.Run("another environment's", func(t *testing.T) {
			e := wantError(t, get(prod.on(t), "/integrations/gh"), http.StatusNotFound, "not_found")
			if e.message != `Integration "gh" does not exist` {
				t.Errorf("message %q", e.message)
			}
		})
		t.Run("bad path", func(t *testing.T) {
			wantError(t, get(v.on(t), "/integrations/a%2Fb"), http.StatusBadRequest, "invalid_uri_params")
		})
		t.Run("a key with spaces and colons", func(t *testing.T) {
			v.on(t).createIntegrationOK(`{"provider":"openai","unique_key":"my key:1@x"}`)
			data := integrationData(t, get(v.on(t), "/integrations/my%20key:1@x"))
			if data["unique_key"] != "my key:1@x" {
				t.Errorf("data %s", mustJSON(data))
			}
		})
	})
}

// wantIntegrationKeys requires an integration object with the always-present keys and extra.
func wantIntegrationKeys(t *testing.T, data map[string]any, extra ...string) {
	t.Helper()
	keys := append([]string{"unique_key", "provider", "display_name", "logo", "forward_webhooks", "created_at", "updated_at"}, extra...)
	if len(data) != len(keys) {
		t.Errorf("keys of %s, want %v", mustJSON(data), keys)
	}
	for _, k := range keys {
		if _, ok := data[k]; !ok {
			t.Errorf("no %q in %s", k, mustJSON(data))
		}
	}
}

func TestListIntegrations(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		lister := v.on(t)
		lister.key = v.apiKey("dev", scopeIntegrationsList)
		t.Run("empty", func(t *testing.T) {
			res := lister.on(t).integrationsAPI(http.MethodGet, "/integrations", "")
			if res.status != http.StatusOK || string(res.body) != "{\"data\":[]}\n" {
				t.Errorf("%d %q", res.status, res.body)
			}
		})
		v.createIntegrationOK(`{"provider":"openai","unique_key":"openai-b"}`)
		v.createIntegrationOK(githubIntegration)
		v.createIntegrationOK(`{"provider":"openai","unique_key":"openai-a"}`)
		v.createIntegrationOK(`{"provider":"twitter","unique_key":"tw","credentials":{"type":"OAUTH1","client_id":"tw-id","client_secret":"tw-secret-9999"}}`)
		v.apiKey("prod", contract.FullAccess)
		v.on(t).integration("prod", "prod-only", "NONE")

		for name, api := range map[string]*env{"list scope": lister, "full access": v} {
			t.Run(name, func(t *testing.T) {
				res := api.on(t).integrationsAPI(http.MethodGet, "/integrations", "")
				if res.status != http.StatusOK {
					t.Fatalf("%d %s", res.status, res.body)
				}
				var body struct {
					Data []map[string]any `json:"data"`
				}
				if err := json.Unmarshal(res.body, &body); err != nil {
					t.Fatal(err)
				}
				var keys []string
				for _, in := range body.Data {
					wantIntegrationKeys(t, in)
					keys = append(keys, in["unique_key"].(string))
				}
				// By provider, then by creation.
				if strings.Join(keys, ",") != "gh,openai-b,openai-a,tw" {
					t.Errorf("order %v", keys)
				}
				for _, secret := range []string{"gh-client-secret-1234", "tw-secret-9999", "gh-client-id"} {
					if strings.Contains(string(res.body), secret) {
						t.Errorf("the list holds %q", secret)
					}
				}
			})
		}
		t.Run("a query string", func(t *testing.T) {
			wantError(t, v.on(t).integrationsAPI(http.MethodGet, "/integrations?include=credentials", ""), http.StatusBadRequest, "invalid_query_params")
		})
	})
}

func TestUpdateIntegration(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		created := v.createIntegrationOK(githubIntegration)
		v.createIntegrationOK(`{"provider":"openai","unique_key":"openai"}`)
		updater := v.on(t)
		updater.key = v.apiKey("dev", scopeIntegrationsUpdate)
		prod := v.on(t)
		prod.key = v.apiKey("prod", contract.FullAccess)
		patch := func(api *env, key, body string) response {
			return api.integrationsAPI(http.MethodPatch, "/integrations/"+key, body)
		}
		credentials := func(t *testing.T, key string) any {
			return integrationData(t, v.on(t).integrationsAPI(http.MethodGet, "/integrations/"+key+"?include=credentials", ""))["credentials"]
		}

		t.Run("{} changes nothing but updated_at", func(t *testing.T) {
			res := patch(updater.on(t), "gh", `{}`)
			if res.status != http.StatusOK {
				t.Fatalf("%d %s", res.status, res.body)
			}
			data := integrationData(t, res)
			if data["created_at"] != created["created_at"] || data["display_name"] != "GitHub (User OAuth)" {
				t.Errorf("data %s", mustJSON(data))
			}
			if utcTime(t, "updated_at", data["updated_at"]).Before(utcTime(t, "created_at", created["updated_at"])) {
				t.Errorf("updated_at %v before %v", data["updated_at"], created["updated_at"])
			}
		})
		t.Run("display name and webhooks", func(t *testing.T) {
			data := integrationData(t, patch(updater.on(t), "gh", `{"display_name":"GH","forward_webhooks":false}`))
			if data["display_name"] != "GH" || data["forward_webhooks"] != false {
				t.Errorf("data %s", mustJSON(data))
			}
		})
		t.Run("new client keeps the scopes left out", func(t *testing.T) {
			patch(updater.on(t), "gh", `{"credentials":{"type":"OAUTH2","client_id":"new-id","client_secret":"new-secret-4321"}}`)
			if !jsonEqual(t, credentials(t, "gh"), `{"type":"OAUTH2","client_id":"new-id","client_secret":"new-secret-4321","scopes":"repo,user:email","webhook_secret":null}`) {
				t.Errorf("credentials %s", mustJSON(credentials(t, "gh")))
			}
		})
		t.Run(`scopes "" clears them`, func(t *testing.T) {
			patch(updater.on(t), "gh", `{"credentials":{"type":"OAUTH2","client_id":"new-id","client_secret":"new-secret-4321","scopes":""}}`)
			if c, _ := credentials(t, "gh").(map[string]any); c["scopes"] != nil {
				t.Errorf("scopes %v, want null", c["scopes"])
			}
		})
		t.Run("token URL: set, then stopped", func(t *testing.T) {
			patch(updater.on(t), "gh", `{"token_url":"https://auth.example.test/token","token_auth":"basic"}`)
			in, _ := v.db.FindIntegration(context.Background(), mustEnvID(t, v, "dev"), "gh")
			if in.TokenURL != "https://auth.example.test/token" || in.TokenAuth != "basic" {
				t.Errorf("stored %+v", in)
			}
			patch(updater.on(t), "gh", `{"token_url":""}`)
			in, _ = v.db.FindIntegration(context.Background(), mustEnvID(t, v, "dev"), "gh")
			if in.TokenURL != "" || in.TokenAuth != "" {
				t.Errorf("stored %+v", in)
			}
		})
		t.Run("rename keeps the secret readable", func(t *testing.T) {
			data := integrationData(t, patch(updater.on(t), "gh", `{"unique_key":"github"}`))
			if data["unique_key"] != "github" {
				t.Errorf("data %s", mustJSON(data))
			}
			if c, _ := credentials(t, "github").(map[string]any); c["client_secret"] != "new-secret-4321" {
				t.Errorf("credentials %v", c)
			}
			wantError(t, v.on(t).integrationsAPI(http.MethodGet, "/integrations/gh", ""), http.StatusNotFound, "not_found")
		})

		t.Run("APP: a new GitHub App", func(t *testing.T) {
			v.on(t).createIntegrationOK(`{"provider":"github-app","unique_key":"app","credentials":{"type":"APP","app_id":"1",
				"app_link":"https://github.com/apps/old","private_key":` + mustJSON(testAppKeyPEM(t)) + `}}`)
			res := patch(updater.on(t), "app", `{"credentials":{"type":"APP","app_id":"2","app_link":"https://github.com/apps/new",
				"private_key":`+mustJSON(testAppKeyPEM(t))+`}}`)
			if res.status != http.StatusOK {
				t.Fatalf("%d %s", res.status, res.body)
			}
			c, _ := credentials(t, "app").(map[string]any)
			if c["app_id"] != "2" || c["app_link"] != "https://github.com/apps/new" || c["private_key"] == nil {
				t.Errorf("credentials %s", mustJSON(c))
			}
			e := wantError(t, patch(updater.on(t), "app", `{"credentials":{"type":"APP","app_id":"3","app_link":"l","private_key":"nope"}}`),
				http.StatusBadRequest, "invalid_body")
			checkFieldErrors(t, e.errors, at("credentials", "private_key"))
		})

		v.importOK(`{"provider_config_key":"github","connection_id":"c1","credentials":{"type":"OAUTH2","access_token":"tok-11111111"}}`)
		errorCases := []struct {
			name, key, body string
			status          int
			code, message   string
		}{
			{"rename with connections", "github", `{"unique_key":"gh2"}`, 400, "invalid_body", "Can't rename an integration with active connections"},
			{"new key taken", "openai", `{"unique_key":"github"}`, 400, "invalid_body", "uniqueKey is already used by another integration"},
			{"credentials of another type", "github", `{"credentials":{"type":"APP","app_id":"1","app_link":"l","private_key":"k"}}`, 400, "invalid_body", "incompatible credentials auth type and provider auth"},
			{"credentials for a mode without", "openai", `{"credentials":{"type":"OAUTH2","client_id":"a","client_secret":"b"}}`, 400, "invalid_body", "incompatible credentials auth type and provider auth"},
			{"unknown", "nope", `{}`, 404, "not_found", `Integration "nope" does not exist`},
			{"empty display name", "github", `{"display_name":""}`, 400, "invalid_body", ""},
			{"unknown field", "github", `{"provider":"gitlab"}`, 400, "invalid_body", ""},
			{"token URL on API_KEY", "openai", `{"token_url":"https://a.test/t"}`, 400, "invalid_body", ""},
		}
		for _, tc := range errorCases {
			t.Run(tc.name, func(t *testing.T) {
				e := wantError(t, patch(updater.on(t), tc.key, tc.body), tc.status, tc.code)
				if tc.message != "" && e.message != tc.message {
					t.Errorf("message %q, want %q", e.message, tc.message)
				}
			})
		}
		t.Run("another environment's", func(t *testing.T) {
			e := wantError(t, patch(prod.on(t), "github", `{"display_name":"x"}`), http.StatusNotFound, "not_found")
			if e.message != `Integration "github" does not exist` {
				t.Errorf("message %q", e.message)
			}
		})
		t.Run("a query string", func(t *testing.T) {
			wantError(t, updater.on(t).integrationsAPI(http.MethodPatch, "/integrations/github?x=1", `{}`), http.StatusBadRequest, "invalid_query_params")
		})
	})
}

func TestDeleteIntegration(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.createIntegrationOK(githubIntegration)
		v.createIntegrationOK(`{"provider":"openai","unique_key":"openai"}`)
		prod := v.on(t)
		prod.key = v.apiKey("prod", contract.FullAccess)
		prod.createIntegrationOK(githubIntegration)
		deleter := v.on(t)
		deleter.key = v.apiKey("dev", scopeIntegrationsDelete)
		for _, id := range []string{"c1", "c2"} {
			v.importOK(`{"provider_config_key":"gh","connection_id":"` + id + `","credentials":{"type":"OAUTH2","access_token":"tok-` + id + `-123456"}}`)
		}
		v.importOK(`{"provider_config_key":"openai","connection_id":"c1","credentials":{"type":"API_KEY","apiKey":"sk-kept-123456"}}`)
		prod.importOK(`{"provider_config_key":"gh","connection_id":"c1","credentials":{"type":"OAUTH2","access_token":"tok-prod-123456"}}`)
		del := func(api *env, key string) response {
			return api.integrationsAPI(http.MethodDelete, "/integrations/"+key, "")
		}

		res := del(deleter.on(t), "gh")
		if res.status != http.StatusOK || !jsonEqual(t, decodeObject(t, res.body), `{"success":true}`) {
			t.Fatalf("delete: %d %s", res.status, res.body)
		}
		t.Run("the access line says how many connections went", func(t *testing.T) {
			var found bool
			for _, line := range strings.Split(v.logs.String(), "\n") {
				if strings.Contains(line, `"integration deleted"`) {
					t.Errorf("a separate audit line: %s", line)
				}
				if strings.Contains(line, `"msg":"request"`) && strings.Contains(line, `"method":"DELETE"`) &&
					strings.Contains(line, `"outcome":"deleted"`) {
					found = true
					if !strings.Contains(line, `"connections_deleted":2`) || !strings.Contains(line, `"integration":"gh"`) {
						t.Errorf("audit line %s", line)
					}
				}
			}
			if !found {
				t.Error("no audit line")
			}
		})
		t.Run("the integration is gone", func(t *testing.T) {
			wantError(t, v.on(t).integrationsAPI(http.MethodGet, "/integrations/gh", ""), http.StatusNotFound, "not_found")
		})
		t.Run("an import answers 404 at once", func(t *testing.T) {
			// The import before the delete put the integration in the cache.
			e := wantError(t, v.on(t).do(request{body: `{"provider_config_key":"gh","connection_id":"c3","credentials":{"type":"OAUTH2","access_token":"tok-c3-123456"}}`}),
				http.StatusNotFound, "not_found")
			if e.message != "Integration does not exist" {
				t.Errorf("message %q", e.message)
			}
		})
		t.Run("its connections are gone", func(t *testing.T) {
			wantError(t, v.on(t).do(request{method: http.MethodGet, path: "/connections/c1?provider_config_key=gh"}), http.StatusBadRequest, "unknown_provider_config")
			res := v.on(t).do(request{method: http.MethodGet, path: "/connections"})
			var list struct {
				Connections []map[string]any `json:"connections"`
			}
			if err := json.Unmarshal(res.body, &list); err != nil {
				t.Fatal(err)
			}
			if len(list.Connections) != 1 || list.Connections[0]["provider_config_key"] != "openai" {
				t.Errorf("connections %s", res.body)
			}
			var n int64
			sqlDB, _ := v.db.SQL()
			if err := sqlDB.QueryRow("SELECT COUNT(*) FROM connections").Scan(&n); err != nil || n != 2 {
				t.Errorf("%d connection rows, %v; want 2 (openai's and prod's)", n, err)
			}
		})
		t.Run("another environment's is untouched", func(t *testing.T) {
			if res := prod.on(t).do(request{method: http.MethodGet, path: "/connections/c1?provider_config_key=gh"}); res.status != http.StatusOK {
				t.Errorf("prod connection: %d %s", res.status, res.body)
			}
		})
		t.Run("again, unknown or another environment's: 404", func(t *testing.T) {
			for _, key := range []string{"gh", "nope"} {
				e := wantError(t, del(deleter.on(t), key), http.StatusNotFound, "not_found")
				if e.message != "Integration does not exist" {
					t.Errorf("message %q", e.message)
				}
			}
			prodDeleter := prod.on(t)
			wantError(t, del(prodDeleter, "openai"), http.StatusNotFound, "not_found")
		})
		t.Run("created again: a new, empty integration", func(t *testing.T) {
			v.on(t).createIntegrationOK(githubIntegration)
			wantError(t, v.on(t).do(request{method: http.MethodGet, path: "/connections/c1?provider_config_key=gh"}), http.StatusNotFound, "not_found")
		})
	})
}

// TestDeleteIntegrationOtherReplica: a replica that cached the integration before another deleted
// it refuses imports into it, and forgets it within the cache TTL.
func TestDeleteIntegrationOtherReplica(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		db := storetest.Open(t, b)
		a := newEnvOn(t, db)
		clk := &clock{now: time.Now()}
		other := newEnvWith(t, db, server.Config{Now: clk.Now, KeyCacheTTL: 2 * time.Second})
		a.createIntegrationOK(githubIntegration)
		other.importOK(`{"provider_config_key":"gh","connection_id":"c1","credentials":{"type":"OAUTH2","access_token":"tok-c1-123456"}}`)
		if res := a.integrationsAPI(http.MethodDelete, "/integrations/gh", ""); res.status != http.StatusOK {
			t.Fatalf("delete: %d %s", res.status, res.body)
		}
		importC2 := `{"provider_config_key":"gh","connection_id":"c2","credentials":{"type":"OAUTH2","access_token":"tok-c2-123456"}}`
		// Within the TTL the other replica still has the integration, but the database refuses a
		// connection of an integration that is gone.
		wantError(t, other.do(request{body: importC2}), http.StatusNotFound, "not_found")
		clk.Add(2 * time.Second)
		e := wantError(t, other.do(request{body: importC2}), http.StatusNotFound, "not_found")
		if e.message != "Integration does not exist" {
			t.Errorf("message %q", e.message)
		}
		wantError(t, other.do(request{method: http.MethodGet, path: "/connections/c1?provider_config_key=gh"}), http.StatusBadRequest, "unknown_provider_config")
	})
}

func TestIntegrationScopes(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.createIntegrationOK(`{"provider":"openai","unique_key":"openai"}`)
		ops := []struct {
			method, path, body, scope string
			message                   string
		}{
			{http.MethodGet, "/integrations", "", scopeIntegrationsList,
				"Insufficient scope. Required one of: environment:integrations:list or environment:integrations:list_credentials"},
			{http.MethodGet, "/integrations/openai", "", scopeIntegrationsRead,
				"Insufficient scope. Required one of: environment:integrations:read or environment:integrations:read_credentials"},
			{http.MethodPost, "/integrations", `{"provider":"openai","unique_key":"o2"}`, scopeIntegrationsCreate,
				"Insufficient scope. Required: environment:integrations:create"},
			{http.MethodPatch, "/integrations/openai", `{}`, scopeIntegrationsUpdate,
				"Insufficient scope. Required: environment:integrations:update"},
			{http.MethodDelete, "/integrations/o2", "", scopeIntegrationsDelete,
				"Insufficient scope. Required: environment:integrations:delete"},
		}
		connectionsOnly := v.on(t)
		connectionsOnly.key = v.apiKey("dev", "environment:connections:*")
		wildcard := v.on(t)
		wildcard.key = v.apiKey("dev", "environment:integrations:*")
		for _, op := range ops {
			t.Run(op.method+" "+op.path, func(t *testing.T) {
				e := wantError(t, connectionsOnly.on(t).integrationsAPI(op.method, op.path, op.body), http.StatusForbidden, "forbidden")
				if e.message != op.message {
					t.Errorf("message %q, want %q", e.message, op.message)
				}
				own := v.on(t)
				own.key = v.apiKey("dev", op.scope)
				if res := own.integrationsAPI(op.method, op.path, op.body); res.status != http.StatusOK {
					t.Errorf("with %s: %d %s", op.scope, res.status, res.body)
				}
			})
		}
		t.Run("the wildcard", func(t *testing.T) {
			for _, op := range ops {
				if res := wildcard.on(t).integrationsAPI(op.method, op.path, op.body); res.status != http.StatusOK {
					t.Errorf("%s %s: %d %s", op.method, op.path, res.status, res.body)
				}
			}
		})
		t.Run("every scope is one a key may hold", func(t *testing.T) {
			rules, err := contract.LoadRules()
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"environment:integrations:*", scopeIntegrationsList, "environment:integrations:list_credentials",
				scopeIntegrationsRead, scopeIntegrationsReadCredentials, scopeIntegrationsCreate, scopeIntegrationsUpdate, scopeIntegrationsDelete} {
				if !rules.ValidScope(s) {
					t.Errorf("%s is not a valid scope", s)
				}
			}
		})
		t.Run("no key", func(t *testing.T) {
			wantError(t, v.on(t).do(request{method: http.MethodGet, path: "/integrations", auth: strPtr("")}), http.StatusUnauthorized, "missing_auth_header")
		})
	})
}

func mustEnvID(t *testing.T, v *env, name string) int64 {
	t.Helper()
	id, err := v.db.EnsureEnvironment(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestDeleteIntegrationDuringImports: imports racing a delete either land before it, and go with
// it, or answer 404; none fails, and no connection outlives its integration.
func TestDeleteIntegrationDuringImports(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.createIntegrationOK(githubIntegration)
		v.importOK(`{"provider_config_key":"gh","connection_id":"warm","credentials":{"type":"OAUTH2","access_token":"tok-warm-123456"}}`)
		const imports = 24
		start := make(chan struct{})
		statuses := make(chan int, imports)
		var wg sync.WaitGroup
		for i := range imports {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res := v.do(request{body: `{"provider_config_key":"gh","connection_id":"c` + strconv.Itoa(i) +
					`","credentials":{"type":"OAUTH2","access_token":"tok-race-123456"}}`})
				statuses <- res.status
			}()
		}
		close(start)
		res := v.integrationsAPI(http.MethodDelete, "/integrations/gh", "")
		wg.Wait()
		close(statuses)
		if res.status != http.StatusOK {
			t.Fatalf("delete: %d %s", res.status, res.body)
		}
		for status := range statuses {
			if status != http.StatusOK && status != http.StatusNotFound {
				t.Errorf("an import racing the delete answered %d", status)
			}
		}
		var n int64
		sqlDB, _ := v.db.SQL()
		if err := sqlDB.QueryRow("SELECT COUNT(*) FROM connections WHERE provider_config_key = 'gh'").Scan(&n); err != nil || n != 0 {
			t.Errorf("%d connections of the deleted integration, %v", n, err)
		}
	})
}
