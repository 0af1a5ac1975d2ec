package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/provider/providertest"
	"github.com/credport/credport/store/storetest"
)

// writeFile writes data to a file of the test's own and returns its path.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// keySecrets are the forms in which a private key must not be found in clear.
func keySecrets(t *testing.T, pemData []byte, key *rsa.PrivateKey) map[string]string {
	t.Helper()
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := x509.MarshalPKCS1PrivateKey(key)
	secrets := map[string]string{
		"PKCS#1 DER": string(pkcs1), "PKCS#8 DER": string(pkcs8),
		"PKCS#1 DER in base64": base64.StdEncoding.EncodeToString(pkcs1),
		"PKCS#8 DER in base64": base64.StdEncoding.EncodeToString(pkcs8),
		"private exponent":     string(key.D.Bytes()),
	}
	for i, line := range providertest.PEMLines(pemData) {
		if len(line) >= 32 { // the last, short line may occur anywhere by chance
			secrets[fmt.Sprintf("PEM line %d", i+1)] = line
		}
	}
	return secrets
}

func TestIntegrationsCreateGitHubApp(t *testing.T) {
	key := providertest.AppKey(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	publicDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := providertest.PKCS1PEM(key)
	pkcs8 := providertest.PKCS8PEM(t, key)
	files := map[string][]byte{
		"pkcs1":      pkcs1,
		"pkcs8":      pkcs8,
		"pkcs1 crlf": []byte(strings.ReplaceAll(string(pkcs1), "\n", "\r\n")),
		"ec":         pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}),
		"ec pkcs8":   providertest.PKCS8PEM(t, ecKey),
		"ed25519":    providertest.PKCS8PEM(t, edKey),
		"rsa 1024":   providertest.PKCS1PEM(small),
		"public key": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: publicDER}),
		"encrypted": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
			Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"},
			Bytes:   []byte("not really ciphertext")}),
		"pkcs1 body garbled": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte("garbage")}),
		"garbage":            []byte("this is not a key\n"),
		"empty":              {},
	}

	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		paths := map[string]string{}
		for name, data := range files {
			paths[name] = writeFile(t, strings.ReplaceAll(name, " ", "-")+".pem", data)
		}
		cases := []struct {
			name    string
			args    []string // after the environment, unique key and provider; FILE:x is the path of file x
			wantErr string
			wantURL string // the stored API base URL of a created integration
		}{
			{name: "PKCS#1 key, default API", args: []string{"--auth-mode", "APP", "--app-id", "123", "--private-key-file", "FILE:pkcs1"},
				wantURL: "https://api.github.com"},
			{name: "PKCS#8 key, GitHub Enterprise Server", args: []string{"--auth-mode", "app", "--app-id", "123", "--private-key-file", "FILE:pkcs8",
				"--api-base-url", "https://ghe.example.test/api/v3/"},
				wantURL: "https://ghe.example.test/api/v3"},
			{name: "PKCS#1 key with CRLF line ends", args: []string{"--auth-mode", "APP", "--app-id", "123", "--private-key-file", "FILE:pkcs1 crlf"},
				wantURL: "https://api.github.com"},
			{name: "with client credentials too", args: []string{"--auth-mode", "APP", "--app-id", "123", "--private-key-file", "FILE:pkcs1",
				"--client-id", "Iv1.abc", "--client-secret", "app-client-secret"},
				wantURL: "https://api.github.com"},

			{name: "EC key", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "FILE:ec"},
				wantErr: "an EC private key: GitHub App keys are RSA keys"},
			{name: "EC key in PKCS#8", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "FILE:ec pkcs8"},
				wantErr: "an ECDSA private key: GitHub App keys are RSA keys"},
			{name: "Ed25519 key", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "FILE:ed25519"},
				wantErr: "an Ed25519 private key"},
			{name: "RSA key of 1024 bits", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "FILE:rsa 1024"},
				wantErr: "an RSA key of 1024 bits: want at least 2048"},
			{name: "public key", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "FILE:public key"},
				wantErr: `a PEM "PUBLIC KEY" block, not a private key`},
			{name: "encrypted key", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "FILE:encrypted"},
				wantErr: "the private key is encrypted"},
			{name: "garbled PKCS#1", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "FILE:pkcs1 body garbled"},
				wantErr: "malformed PKCS#1 RSA private key"},
			{name: "garbage", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "FILE:garbage"},
				wantErr: "no PEM block found"},
			{name: "empty file", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "FILE:empty"},
				wantErr: "no PEM block found"},
			{name: "no such file", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "/nonexistent/key.pem"},
				wantErr: "no such file"},
			{name: "APP without app id", args: []string{"--auth-mode", "APP", "--private-key-file", "FILE:pkcs1"},
				wantErr: "--app-id is required with auth mode APP"},
			{name: "APP without private key", args: []string{"--auth-mode", "APP", "--app-id", "1"},
				wantErr: "--private-key-file is required with auth mode APP"},
			{name: "app id for OAUTH2", args: []string{"--auth-mode", "OAUTH2", "--app-id", "1"},
				wantErr: "--app-id is for auth mode APP only"},
			{name: "private key for API_KEY", args: []string{"--auth-mode", "API_KEY", "--private-key-file", "FILE:pkcs1"},
				wantErr: "--private-key-file is for auth mode APP only"},
			{name: "API base URL not http", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "FILE:pkcs1",
				"--api-base-url", "ftp://ghe.example.test"}, wantErr: "want an absolute http(s) URL"},
			{name: "API base URL relative", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "FILE:pkcs1",
				"--api-base-url", "api/v3"}, wantErr: "want an absolute http(s) URL"},
			{name: "API base URL with credentials", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "FILE:pkcs1",
				"--api-base-url", "https://user:pass@ghe.example.test/api/v3"}, wantErr: "must not carry credentials"},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := c.in(t)
				env, key := fmt.Sprintf("env%d", i), fmt.Sprintf("app%d", i)
				args := []string{"integrations", "create", "--env", env, "--unique-key", key, "--provider", "github-app"}
				var pemData []byte
				for _, a := range tc.args {
					if name, ok := strings.CutPrefix(a, "FILE:"); ok {
						a, pemData = paths[name], files[name]
					}
					args = append(args, a)
				}
				out, stderr, err := c.run(args...)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
					}
					if _, _, err := c.run("integrations", "list", "--env", env); err == nil {
						t.Errorf("environment %q exists after a refused create", env)
					}
				} else {
					if err != nil {
						t.Fatalf("integrations create: %v\n%s", err, stderr)
					}
					mode := "APP"
					if want := key + "\tgithub-app\t" + mode + "\n"; out != want {
						t.Errorf("stdout = %q, want %q", out, want)
					}
					list, err := c.db().ListIntegrations(context.Background(), env)
					if err != nil || len(list) != 1 {
						t.Fatalf("integrations of %s: %v, %v", env, list, err)
					}
					got := list[0]
					if got.AppID != "123" || got.APIBaseURL != tc.wantURL || !got.HasPrivateKey {
						t.Errorf("stored app id %q, API base URL %q, private key %v; want 123, %s, true", got.AppID, got.APIBaseURL, got.HasPrivateKey, tc.wantURL)
					}
					if _, err := c.db().AppPrivateKey(context.Background(), got); err != nil {
						t.Errorf("the stored private key does not open: %v", err)
					}
					stored := c.query("SELECT private_key FROM integrations WHERE unique_key = $1", key)
					if len(stored) != 1 || !strings.HasPrefix(stored[0], "v1:test:") {
						t.Errorf("private_key = %.40q, want a value sealed with the test key (v1:test:...)", stored)
					}
				}
				if pemData != nil && tc.wantErr == "" {
					dump := c.stored()
					if !strings.Contains(dump, key) {
						t.Fatalf("the database scan does not find integration %s: it does not read what is stored", key)
					}
					assertNoLeak(t, "the database", dump, keySecrets(t, pemData, providertest.AppKey(t)))
				}
				assertNoLeak(t, "create output", out+stderr+fmt.Sprint(err), map[string]string{"PEM body": pemBody(pemData)})
			})
		}
	})
}

// pemBody is the second line of a PEM file, or a value that no output contains.
func pemBody(data []byte) string {
	if lines := providertest.PEMLines(data); len(lines) > 0 && len(lines[0]) >= 16 {
		return lines[0]
	}
	return "\x00no PEM body\x00"
}

// TestServeGitHubApp imports GitHub App installations through a running server that mints their
// tokens from a fake GitHub, then scans the logs and the database for the key and the tokens.
func TestServeGitHubApp(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		addr := freeAddr(t)
		c.env["CREDPORT_LISTEN"] = addr
		c.env["CREDPORT_LOG_LEVEL"] = "debug"
		key := providertest.AppKey(t)
		gh := providertest.NewGitHub(t, "424242", key)
		gh.Install("77")
		pemData := providertest.PKCS8PEM(t, key)
		c.must("integrations", "create", "--env", "dev", "--unique-key", "gh-app", "--provider", "github-app", "--auth-mode", "APP",
			"--app-id", "424242", "--private-key-file", writeFile(t, "app.pem", pemData), "--api-base-url", gh.URL)
		apiKey := strings.TrimSpace(c.must("keys", "create", "--env", "dev", "--name", "e2e"))

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var serverOut, serverErr syncBuffer
		done := make(chan error, 1)
		go func() { done <- run(ctx, []string{"serve"}, c.getenv(), &serverOut, &serverErr) }()
		client := &http.Client{Timeout: 15 * time.Second}
		defer client.CloseIdleConnections()
		waitReady(t, client, addr, done, &serverErr)

		post := func(installationID string) (int, map[string]any) {
			t.Helper()
			body := `{"provider_config_key":"gh-app","connection_id":"octo-org","credentials":{"type":"APP","app_id":"424242","installation_id":"` +
				installationID + `"},"connection_config":{"org":"octo-org"}}`
			status, data := postConnection(t, client, addr, apiKey, body)
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatalf("response %s: %v", data, err)
			}
			return status, m
		}
		accessToken := func(conn map[string]any) any {
			creds, _ := conn["credentials"].(map[string]any)
			return creds["access_token"]
		}

		status, first := post("77")
		if status != http.StatusOK || accessToken(first) != gh.LastToken().Token {
			t.Fatalf("import: %d %v, want 200 with the minted token", status, first)
		}
		status, second := post("77")
		if status != http.StatusOK || accessToken(second) != gh.LastToken().Token || accessToken(second) == accessToken(first) ||
			second["id"] != first["id"] {
			t.Fatalf("re-import: %d %v, want 200, the same connection with a fresh token", status, second)
		}
		if status, res := post("78"); status != http.StatusBadRequest {
			t.Errorf("unknown installation: %d %v, want 400", status, res)
		}
		gh.SetMode(providertest.GitHubFail)
		if status, res := post("77"); status != http.StatusBadGateway {
			t.Errorf("GitHub failing: %d %v, want 502", status, res)
		}
		if len(gh.Tokens()) != 2 || len(gh.JWTs()) != 4 {
			t.Errorf("GitHub minted %d tokens for %d requests, want 2 for 4", len(gh.Tokens()), len(gh.JWTs()))
		}

		secrets := keySecrets(t, pemData, key)
		secrets["API key secret"] = apiKey
		for i, tok := range gh.Tokens() {
			secrets[fmt.Sprintf("installation token %d", i+1)] = tok.Token
		}
		for i, jwt := range gh.JWTs() {
			secrets[fmt.Sprintf("JWT %d", i+1)] = jwt
		}
		dump := c.stored()
		if !strings.Contains(dump, "octo-org") {
			t.Fatal("the database scan does not find connection octo-org: it does not read what is stored")
		}
		assertNoLeak(t, "the database", dump, secrets)

		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("serve after cancel: %v\n%s", err, serverErr.String())
			}
		case <-time.After(15 * time.Second):
			t.Fatal("serve did not return after cancel")
		}
		logs := serverErr.String()
		if !strings.Contains(logs, "provider_unavailable") || !strings.Contains(logs, `"type":"APP","outcome":`) {
			t.Errorf("the server log lacks the import and the 502: the scan does not see it:\n%s", logs)
		}
		assertNoLeak(t, "the server log", logs, secrets)
		assertNoLeak(t, "the server output", serverOut.String(), secrets)
	})
}
