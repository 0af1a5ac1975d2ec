package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/store/storetest"
)

// nangoNodeDir holds the pinned @nangohq/node package and the script that drives credport with it.
const nangoNodeDir = "../../compat/nango-node"

// nangoNodeVersion is the version of @nangohq/node that package.json pins.
const nangoNodeVersion = "0.71.10"

// requireNode returns the paths of node and npm. Without them the test is skipped, except under
// CI, where that is a failure.
func requireNode(t *testing.T) (node, npm string) {
	t.Helper()
	node, errNode := exec.LookPath("node")
	npm, errNpm := exec.LookPath("npm")
	if errNode != nil || errNpm != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Node.js and npm are required under CI (node: %v, npm: %v)", errNode, errNpm)
		}
		t.Skipf("Node.js or npm not found (node: %v, npm: %v)", errNode, errNpm)
	}
	return node, npm
}

// installNangoNode runs `npm ci` in nangoNodeDir unless the pinned SDK is already installed there.
func installNangoNode(t *testing.T, npm string) {
	t.Helper()
	var pkg struct {
		Version string `json:"version"`
	}
	if data, err := os.ReadFile(filepath.Join(nangoNodeDir, "node_modules", "@nangohq", "node", "package.json")); err == nil &&
		json.Unmarshal(data, &pkg) == nil && pkg.Version == nangoNodeVersion {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--cache", ".npm-cache")
	cmd.Dir = nangoNodeDir
	cmd.Env = append(os.Environ(), "NO_UPDATE_NOTIFIER=1", "npm_config_update_notifier=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", nangoNodeDir, err, out)
	}
}

// compatPost sends one request with a JSON body and returns the status and body.
func compatPost(t *testing.T, client *http.Client, method, url, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}

// TestNangoNodeSDK drives credport with Nango's official Node SDK, @nangohq/node at the version
// compat/nango-node pins, on both databases, and checks every result against what Nango answers.
func TestNangoNodeSDK(t *testing.T) {
	node, npm := requireNode(t)
	installNangoNode(t, npm)
	script, err := filepath.Abs(filepath.Join(nangoNodeDir, "compat.mjs"))
	if err != nil {
		t.Fatal(err)
	}

	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		key := strings.TrimSpace(c.must("keys", "create", "--env", "dev", "--name", "sdk"))
		readKey := strings.TrimSpace(c.must("keys", "create", "--env", "dev", "--name", "sdk-read",
			"--scope", "environment:connections:read", "--scope", "environment:connections:list"))
		for _, in := range [][3]string{{"gh", "github", "OAUTH2"}, {"tw", "twitter", "OAUTH1"}, {"openai", "openai", "API_KEY"}} {
			c.must("integrations", "create", "--env", "dev", "--unique-key", in[0], "--provider", in[1], "--auth-mode", in[2])
		}
		s := startServe(t, c)
		client := &http.Client{Timeout: 10 * time.Second}
		waitReady(t, client, s.addr, s.done, s.stderr)
		host := "http://" + s.addr

		// Imported oldest first; lists answer newest first.
		expiresAt := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
		imports := []string{
			`{"provider_config_key":"gh","connection_id":"user-1",
			  "credentials":{"type":"OAUTH2","access_token":"gho_sdk_access","refresh_token":"ghr_sdk_refresh","expires_at":"` + expiresAt + `"},
			  "metadata":{"plan":"pro"},"tags":{"team":"billing","region":"eu"},
			  "end_user":{"id":"eu-1","email":"ada@example.com","display_name":"Ada"}}`,
			`{"provider_config_key":"tw","connection_id":"user-1",
			  "credentials":{"type":"OAUTH1","oauth_token":"tw_sdk_token","oauth_token_secret":"tw_sdk_secret"},
			  "tags":{"team":"billing"}}`,
			`{"provider_config_key":"openai","connection_id":"acme","credentials":{"type":"API_KEY","apiKey":"sk-sdk-key"}}`,
			`{"provider_config_key":"gh","connection_id":"user-2","credentials":{"type":"OAUTH2","access_token":"gho_sdk_2"},"metadata":{"seat":"x"}}`,
			`{"provider_config_key":"gh","connection_id":"user-3","credentials":{"type":"OAUTH2","access_token":"gho_sdk_3"}}`,
		}
		for _, body := range imports {
			if status, resp := compatPost(t, client, http.MethodPost, host+"/connections", key, body); status != http.StatusOK {
				t.Fatalf("import: %d %s\nrequest: %s", status, resp, body)
			}
		}

		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, script)
		cmd.Dir = nangoNodeDir
		cmd.Env = append(os.Environ(), "NANGO_HOST="+host, "NANGO_SECRET_KEY="+key, "NANGO_READ_KEY="+readKey)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("node compat.mjs: %v\nstderr:\n%s\nserver:\n%s", err, stderr.String(), s.stderr)
		}
		var got map[string]any
		if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
			t.Fatalf("compat.mjs output is not one JSON document: %v\n%s", err, stdout.String())
		}
		checkNangoNodeResults(t, got, expiresAt)
	})
}

// checkNangoNodeResults compares what compat.mjs printed with what Nango answers each call.
func checkNangoNodeResults(t *testing.T, got map[string]any, expiresAt string) {
	t.Helper()
	result := func(name string) any {
		t.Helper()
		v, ok := got[name]
		if !ok {
			t.Errorf("%s: no result", name)
		}
		return v
	}
	// want compares a result with a Go value through its JSON form.
	want := func(name string, expected any) {
		t.Helper()
		data, err := json.Marshal(expected)
		if err != nil {
			t.Fatal(err)
		}
		var norm any
		if err := json.Unmarshal(data, &norm); err != nil {
			t.Fatal(err)
		}
		if v := result(name); !reflect.DeepEqual(v, norm) {
			t.Errorf("%s:\n got %s\nwant %s", name, compatJSON(v), data)
		}
	}
	// wantError checks that the SDK threw on an HTTP answer with this status and error body.
	wantError := func(name string, status int, errBody map[string]any) {
		t.Helper()
		want(name, map[string]any{"error": map[string]any{"status": status, "data": map[string]any{"error": errBody}}})
	}
	// object is a result that must be a JSON object.
	object := func(name string) map[string]any {
		t.Helper()
		m, ok := result(name).(map[string]any)
		if !ok {
			t.Fatalf("%s: got %s, want an object", name, compatJSON(result(name)))
		}
		return m
	}
	type M = map[string]any

	// getConnection: ConnectionFull with webhook_url_override, refresh tokens stripped by default.
	conn := object("getConnection")
	wantKeys(t, "getConnection", conn, "id", "connection_id", "provider_config_key", "provider", "errors", "end_user",
		"tags", "metadata", "connection_config", "webhook_url_override", "created_at", "updated_at", "last_fetched_at", "credentials")
	fields := M{
		"connection_id": "user-1", "provider_config_key": "gh", "provider": "github", "errors": []any{},
		"metadata": M{"plan": "pro"}, "connection_config": M{}, "webhook_url_override": nil,
		"tags":     M{"team": "billing", "region": "eu", "end_user_id": "eu-1", "end_user_email": "ada@example.com", "end_user_display_name": "Ada"},
		"end_user": M{"id": "eu-1", "email": "ada@example.com", "display_name": "Ada", "tags": nil, "organization": nil},
		"credentials": M{"type": "OAUTH2", "access_token": "gho_sdk_access", "expires_at": expiresAt,
			"raw": M{"type": "OAUTH2", "access_token": "gho_sdk_access", "expires_at": expiresAt}},
	}
	for key, expected := range fields {
		compatField(t, "getConnection", conn, key, expected)
	}
	for _, key := range []string{"created_at", "updated_at", "last_fetched_at"} {
		if s, _ := conn[key].(string); s == "" {
			t.Errorf("getConnection: %s = %v, want a timestamp", key, conn[key])
		} else if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			t.Errorf("getConnection: %s: %v", key, err)
		}
	}
	if _, ok := conn["id"].(float64); !ok {
		t.Errorf("getConnection: id = %v, want a number", conn["id"])
	}
	compatField(t, "getConnectionWithRefreshToken", object("getConnectionWithRefreshToken"), "credentials",
		M{"type": "OAUTH2", "access_token": "gho_sdk_access", "refresh_token": "ghr_sdk_refresh", "expires_at": expiresAt,
			"raw": M{"type": "OAUTH2", "access_token": "gho_sdk_access", "refresh_token": "ghr_sdk_refresh", "expires_at": expiresAt}})
	oauth1 := object("getConnectionOAuth1")
	compatField(t, "getConnectionOAuth1", oauth1, "end_user", nil)
	compatField(t, "getConnectionOAuth1", oauth1, "credentials", M{"type": "OAUTH1", "oauth_token": "tw_sdk_token",
		"oauth_token_secret": "tw_sdk_secret", "raw": M{"type": "OAUTH1", "oauth_token": "tw_sdk_token", "oauth_token_secret": "tw_sdk_secret"}})

	// getToken: the access token for OAUTH2, the token pair for OAUTH1, the credentials otherwise.
	want("getTokenOAuth2", "gho_sdk_access")
	want("getTokenOAuth1", M{"oAuthToken": "tw_sdk_token", "oAuthTokenSecret": "tw_sdk_secret"})
	want("getTokenApiKey", M{"type": "API_KEY", "apiKey": "sk-sdk-key"})
	want("getRawTokenResponse", M{"type": "OAUTH2", "access_token": "gho_sdk_access", "expires_at": expiresAt})
	wantError("getConnectionUnknownConnection", 404, M{"code": "not_found", "message": "Failed to find connection"})
	wantError("getConnectionUnknownIntegration", 400, M{"code": "unknown_provider_config", "message": "Provider does not exists"})
	if e, _ := object("getConnectionForceRefresh")["error"].(M); e == nil || e["status"] != float64(400) ||
		e["data"].(M)["error"].(M)["code"] != "invalid_credentials" {
		t.Errorf("getConnectionForceRefresh: got %s, want 400 invalid_credentials", compatJSON(got["getConnectionForceRefresh"]))
	}

	// A key with read and list but not read_credentials.
	readerConn := object("readerGetConnection")
	compatField(t, "readerGetConnection", readerConn, "credentials", M{})
	compatField(t, "readerGetConnection", readerConn, "connection_id", "user-1")
	want("readerGetToken", M{})
	wantError("readerRefreshToken", 403, M{"code": "forbidden",
		"message": "Credential and refresh options require the environment:connections:read_credentials scope"})
	wantError("readerSetMetadata", 403, M{"code": "forbidden", "message": "Insufficient scope. Required: environment:connections:update"})
	if list, ok := result("readerList").([]any); !ok || len(list) != 2 {
		t.Errorf("readerList: got %s, want two connections", compatJSON(result("readerList")))
	}

	// Metadata: POST replaces (201, echoing the body), PATCH merges (200), all or nothing.
	want("getMetadata", M{"plan": "pro"})
	want("setMetadata", M{"status": 201, "data": M{"connection_id": "user-1", "provider_config_key": "gh", "metadata": M{"a": 1, "nested": M{"k": "v"}}}})
	want("getMetadataAfterSet", M{"a": 1, "nested": M{"k": "v"}})
	want("updateMetadata", M{"status": 200, "data": M{"connection_id": []string{"user-1", "user-2"}, "provider_config_key": "gh", "metadata": M{"b": 2}}})
	want("getMetadataAfterUpdate", M{"a": 1, "b": 2, "nested": M{"k": "v"}})
	want("getMetadataAfterUpdateOther", M{"seat": "x", "b": 2})
	want("setMetadataClear", M{"status": 201, "data": M{"connection_id": "user-2", "provider_config_key": "gh", "metadata": M{}}})
	want("getMetadataAfterClear", M{})
	wantError("setMetadataUnknown", 404, M{"code": "unknown_connection",
		"message": "Connection with connection id nobody and provider config key gh not found. Import it with POST /connections (or credport import), or list the connections with GET /connections"})
	wantError("updateMetadataPartlyUnknown", 404, M{"code": "unknown_connection",
		"message": "Connection with connection id nobody and provider config key gh not found. Import it with POST /connections (or credport import), or list the connections with GET /connections. No actions were taken on any of the connections as a result of this failure."})
	want("getMetadataAfterRefused", M{"a": 1, "b": 2, "nested": M{"k": "v"}})

	// Lists: newest first, filters ANDed, never credentials.
	all := []string{"gh/user-3", "gh/user-2", "openai/acme", "tw/user-1", "gh/user-1"}
	lists := map[string][]string{
		"listAll":                all,
		"listConnectionId":       {"tw/user-1", "gh/user-1"},
		"listIntegrationId":      {"gh/user-3", "gh/user-2", "gh/user-1"},
		"listIntegrationIds":     {"openai/acme", "tw/user-1"},
		"listTags":               {"tw/user-1", "gh/user-1"},
		"listTagsTwo":            {"gh/user-1"},
		"listTagEmail":           {"gh/user-1"},
		"listTagDisplayName":     {"gh/user-1"},
		"listUserId":             {"gh/user-1"},
		"listCombined":           {"tw/user-1"},
		"listNone":               {},
		"listPage0":              all[0:2],
		"listPage1":              all[2:4],
		"listPage2":              all[4:],
		"listPage3":              {},
		"listLegacyConnectionId": {"tw/user-1", "gh/user-1"},
		"listLegacySearch":       {"openai/acme"},
		"listLegacyEndUser":      {"gh/user-1"},
		"listLegacyPaging":       all[3:5],
		"listAfterPatch":         {"gh/user-2"},
		"listAfterEndUserPatch":  {"gh/user-2"},
		"listAfterDelete":        {"gh/user-2", "gh/user-1"},
	}
	for name, ids := range lists {
		want(name, ids)
	}
	raw, _ := object("listAllRaw")["connections"].([]any)
	if len(raw) != len(all) {
		t.Fatalf("listAllRaw: got %s, want %d connections", compatJSON(got["listAllRaw"]), len(all))
	}
	for i, item := range raw {
		c, _ := item.(M)
		name := "listAllRaw[" + all[i] + "]"
		wantKeys(t, name, c, "id", "connection_id", "provider_config_key", "provider", "errors", "end_user", "tags", "metadata", "created")
		if _, err := time.Parse(time.RFC3339Nano, compatString(c["created"])); err != nil {
			t.Errorf("%s: created: %v", name, err)
		}
	}
	compatField(t, "listAllRaw[gh/user-1]", raw[4].(M), "end_user",
		M{"id": "eu-1", "email": "ada@example.com", "display_name": "Ada", "tags": nil, "organization": nil})
	compatField(t, "listAllRaw[tw/user-1]", raw[3].(M), "end_user", nil)
	compatField(t, "listAllRaw[tw/user-1]", raw[3].(M), "provider", "twitter")

	// Patch: tags replaced; end_user yields the end_user_* tags and replaces the tags.
	want("patchConnection", M{"success": true})
	want("getConnectionAfterPatch", M{"tier": "gold"})
	want("patchConnectionEndUser", M{"success": true})
	want("getConnectionAfterEndUserPatch", M{
		"tags":     M{"end_user_id": "eu-2", "end_user_email": "bob@example.com", "end_user_display_name": "Bob"},
		"end_user": M{"id": "eu-2", "email": "bob@example.com", "display_name": "Bob", "tags": nil, "organization": nil},
	})
	want("patchConnectionEmpty", M{"success": true})
	wantError("patchConnectionUnknown", 404, M{"code": "not_found", "message": "Failed to find connection"})
	if e, _ := object("patchConnectionBadBody")["error"].(M); e == nil || e["status"] != float64(400) ||
		e["data"].(M)["error"].(M)["code"] != "invalid_body" {
		t.Errorf("patchConnectionBadBody: got %s, want 400 invalid_body", compatJSON(got["patchConnectionBadBody"]))
	}

	// Delete: 200 {success:true}; then the connection is gone and a second delete is 400.
	want("deleteConnection", M{"status": 200, "data": M{"success": true}})
	wantError("getConnectionAfterDelete", 404, M{"code": "not_found", "message": "Failed to find connection"})
	wantError("getTokenAfterDelete", 404, M{"code": "not_found", "message": "Failed to find connection"})
	wantError("deleteConnectionAgain", 400, M{"code": "unknown_connection"})

	checkNangoNodeIntegrations(t, got, want, wantError)
}

// isoMillis matches JavaScript's Date.toISOString, the format of the reference's timestamps.
var isoMillis = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`)

// checkNangoNodeIntegrations compares the SDK's five integration calls with what Nango answers.
func checkNangoNodeIntegrations(t *testing.T, got map[string]any, want func(string, any),
	wantError func(string, int, map[string]any)) {
	t.Helper()
	type M = map[string]any
	// Timestamps are checked for their format, then left out of the comparison.
	var stamps func(name string, v any)
	stamps = func(name string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, key := range []string{"created_at", "updated_at"} {
				if s, ok := x[key].(string); ok {
					if !isoMillis.MatchString(s) {
						t.Errorf("%s: %s %q, want the toISOString format", name, key, s)
					}
					delete(x, key)
				}
			}
			for _, child := range x {
				stamps(name, child)
			}
		case []any:
			for _, child := range x {
				stamps(name, child)
			}
		}
	}
	for name, v := range got {
		if strings.Contains(name, "Integration") {
			stamps(name, v)
		}
	}
	integration := func(key, provider, displayName string) M {
		return M{"unique_key": key, "provider": provider, "display_name": displayName,
			"logo": "https://app.nango.dev/images/template-logos/" + provider + ".svg", "forward_webhooks": true}
	}
	with := func(m M, key string, v any) M {
		out := M{}
		for k, x := range m {
			out[k] = x
		}
		out[key] = v
		return out
	}
	gh := integration("gh", "github", "GitHub (User OAuth)")
	openai := integration("openai", "openai", "OpenAI")
	tw := integration("tw", "twitter", "Twitter (OAuth 1.0a)")
	lin := integration("lin", "linear", "Linear Prod")

	// listIntegrations wraps the items in the legacy {configs}; by provider, then creation.
	want("listIntegrations", M{"configs": []any{gh, openai, tw}})
	want("createIntegration", M{"data": lin})
	wantError("createIntegrationDuplicate", 400, M{"code": "invalid_body", "message": "Invalid request body",
		"errors": []any{M{"code": "invalid_string", "message": "Unique key already exists", "path": []string{"uniqueKey"}}}})
	wantError("createIntegrationUnknownProvider", 400, M{"code": "invalid_body", "message": "Invalid request body",
		"errors": []any{M{"code": "invalid_string", "message": "Invalid provider", "path": []string{"provider"}}}})
	wantError("createIntegrationMissingCredentials", 400, M{"code": "invalid_body", "message": "Missing credentials"})
	want("getIntegration", M{"data": lin})
	want("getIntegrationCredentials", M{"data": with(lin, "credentials", M{"type": "OAUTH2", "client_id": "lin-client",
		"client_secret": "lin-secret-1", "scopes": "read,write", "webhook_secret": nil})})
	// Only the last element of include is sent: webhook.
	want("getIntegrationIncludeLast", M{"data": with(lin, "webhook_url", nil)})
	wantError("getIntegrationUnknown", 404, M{"code": "not_found", "message": `Integration "nope" does not exist`})
	wantError("readerGetIntegration", 403, M{"code": "forbidden",
		"message": "Insufficient scope. Required one of: environment:integrations:read or environment:integrations:read_credentials"})
	renamed := with(lin, "display_name", "Linear")
	want("updateIntegration", M{"data": renamed})
	want("getIntegrationAfterUpdate", M{"data": with(renamed, "credentials", M{"type": "OAUTH2", "client_id": "lin-client-2",
		"client_secret": "lin-secret-2", "scopes": "read,write", "webhook_secret": nil})})
	wantError("updateIntegrationRenameWithConnections", 400, M{"code": "invalid_body", "message": "Can't rename an integration with active connections"})
	wantError("updateIntegrationWrongType", 400, M{"code": "invalid_body", "message": "incompatible credentials auth type and provider auth"})
	wantError("updateIntegrationUnknown", 404, M{"code": "not_found", "message": `Integration "nope" does not exist`})
	want("listIntegrationsAfterUpdate", M{"configs": []any{gh, renamed, openai, tw}})

	// deleteIntegration resolves to the HTTP response; the connections go with the integration.
	want("deleteIntegration", M{"status": 200, "data": M{"success": true}})
	wantError("getIntegrationAfterDelete", 404, M{"code": "not_found", "message": `Integration "gh" does not exist`})
	wantError("getConnectionAfterIntegrationDelete", 400, M{"code": "unknown_provider_config", "message": "Provider does not exists"})
	want("listAfterIntegrationDelete", []string{"openai/acme", "tw/user-1"})
	wantError("deleteIntegrationAgain", 404, M{"code": "not_found", "message": "Integration does not exist"})
}

// wantKeys checks that an object has exactly these keys.
func wantKeys(t *testing.T, name string, obj map[string]any, keys ...string) {
	t.Helper()
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
		if _, ok := obj[k]; !ok {
			t.Errorf("%s: no %q", name, k)
		}
	}
	for k := range obj {
		if !want[k] {
			t.Errorf("%s: unexpected %q", name, k)
		}
	}
}

// compatField compares one field of an object with a Go value through its JSON form.
func compatField(t *testing.T, name string, obj map[string]any, key string, expected any) {
	t.Helper()
	data, err := json.Marshal(expected)
	if err != nil {
		t.Fatal(err)
	}
	var norm any
	if err := json.Unmarshal(data, &norm); err != nil {
		t.Fatal(err)
	}
	if v, ok := obj[key]; !ok || !reflect.DeepEqual(v, norm) {
		t.Errorf("%s: %s:\n got %s\nwant %s", name, key, compatJSON(v), data)
	}
}

func compatJSON(v any) string {
	data, _ := json.Marshal(v)
	return string(data)
}

func compatString(v any) string {
	s, _ := v.(string)
	return s
}

// TestNangoNodeVerifiesWebhook: a webhook credport delivered passes @nangohq/node's
// verifyIncomingWebhookRequest (X-Nango-Hmac-Sha256) and verifyWebhookSignature (the legacy
// X-Nango-Signature) with the environment's signing key, and fails with another key.
func TestNangoNodeVerifiesWebhook(t *testing.T) {
	node, npm := requireNode(t)
	installNangoNode(t, npm)
	script, err := filepath.Abs(filepath.Join(nangoNodeDir, "verify_webhook.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		c.env["CREDPORT_OUTBOUND_ALLOW_PRIVATE"] = "true"
		c.must("integrations", "create", "--env", "dev", "--unique-key", "gh", "--provider", "github", "--auth-mode", "OAUTH2")
		key := strings.TrimSpace(c.must("keys", "create", "--env", "dev", "--name", "sdk"))
		r := newHookReceiver(t)
		signing := lastLine(c.must("webhooks", "set", "--env", "dev", "--url", r.srv.URL+"/hook"))
		s := startServe(t, c)
		client := &http.Client{Timeout: 10 * time.Second}
		waitReady(t, client, s.addr, s.done, s.stderr)
		// Characters that JSON writers escape differently: the legacy signature covers them too.
		body := `{"provider_config_key":"gh","connection_id":"c'\"[/]","credentials":{"type":"OAUTH2","access_token":"gho_hook"},
			"tags":{"team":"r&d <eu> ü"},"end_user":{"id":"eu-1","email":"ada@example.com"}}`
		if status, resp := compatPost(t, client, http.MethodPost, "http://"+s.addr+"/connections", key, body); status != http.StatusOK {
			t.Fatalf("import: %d %s", status, resp)
		}
		h := r.next(t, 30*time.Second)
		headers := map[string]string{}
		for k := range h.header {
			headers[k] = h.header.Get(k)
		}
		input, err := json.Marshal(map[string]any{"body": string(h.body), "headers": headers, "key": signing})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, script)
		cmd.Dir = nangoNodeDir
		cmd.Stdin = bytes.NewReader(input)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("node verify_webhook.mjs: %v\n%s", err, stderr.String())
		}
		var got map[string]bool
		if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
			t.Fatalf("verify_webhook.mjs output %q: %v", stdout.String(), err)
		}
		if !got["hmac"] || !got["legacy"] || got["wrongKey"] {
			t.Errorf("verification %v, want hmac and legacy true, wrongKey false; body %s", got, h.body)
		}
		s.cancel()
		if err := s.wait(t, 20*time.Second); err != nil {
			t.Errorf("serve: %v", err)
		}
		if strings.Contains(s.stderr.String(), signing) || strings.Contains(s.stderr.String(), "gho_hook") {
			t.Error("the server logged the signing key or a token")
		}
	})
}
