package provider_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credport/credport/provider"
)

func TestBuiltinCatalog(t *testing.T) {
	c, err := provider.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"github", "google", "slack", "salesforce", "hubspot", "microsoft", "notion", "linear", "zoom", "atlassian"} {
		e, ok := c[name]
		if !ok {
			t.Errorf("the built-in catalog lacks %s", name)
			continue
		}
		if e.AuthMode != "OAUTH2" {
			t.Errorf("%s: auth mode %q, want OAUTH2", name, e.AuthMode)
		}
		if !strings.HasPrefix(e.TokenURL, "https://") {
			t.Errorf("%s: token URL %q, want https", name, e.TokenURL)
		}
		if e.TokenAuth != provider.AuthBody && e.TokenAuth != provider.AuthBasic {
			t.Errorf("%s: token auth %q", name, e.TokenAuth)
		}
	}
	// token_auth defaults to body; an entry may say basic.
	if got := c["github"].TokenAuth; got != provider.AuthBody {
		t.Errorf("github token auth %q, want the default %q", got, provider.AuthBody)
	}
	if got := c["notion"].TokenAuth; got != provider.AuthBasic {
		t.Errorf("notion token auth %q, want %q", got, provider.AuthBasic)
	}
	// Every entry has an auth mode; only OAuth 2 entries have a token endpoint.
	for name, mode := range map[string]string{"twitter": "OAUTH1", "github-app": "APP", "openai": "API_KEY",
		"ashby": "BASIC", "netsuite-tba": "TBA", "unauthenticated": "NONE"} {
		if e := c[name]; e.AuthMode != mode || e.TokenURL != "" || e.TokenAuth != "" {
			t.Errorf("%s: %+v, want auth mode %s without a token endpoint", name, e, mode)
		}
	}
	if got := c["github"].DisplayName; got != "GitHub (User OAuth)" {
		t.Errorf("github display name %q", got)
	}
	names := c.Names()
	if len(names) != len(c) {
		t.Fatalf("Names() has %d names for %d entries", len(names), len(c))
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Fatalf("Names() not sorted: %v", names)
		}
	}
	same, err := provider.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if len(same) != len(c) {
		t.Errorf(`Load("") has %d entries, the built-in catalog %d`, len(same), len(c))
	}
}

func TestLoadCatalogFile(t *testing.T) {
	builtin, err := provider.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		yaml    string
		want    map[string]provider.Entry // entries that must be as given
		wantErr []string                  // substrings of the error, besides the file's path
	}{
		{name: "adds and replaces",
			yaml: "github:\n  token_url: https://ghe.example.test/login/oauth/access_token\n  token_auth: basic\n" +
				"acme:\n  token_url: http://127.0.0.1:8080/token\n",
			want: map[string]provider.Entry{
				"github": {AuthMode: "OAUTH2", DisplayName: "github", TokenURL: "https://ghe.example.test/login/oauth/access_token", TokenAuth: provider.AuthBasic},
				"acme":   {AuthMode: "OAUTH2", DisplayName: "acme", TokenURL: "http://127.0.0.1:8080/token", TokenAuth: provider.AuthBody},
				"google": builtin["google"],
			}},
		{name: "other auth modes", yaml: "acme-key:\n  auth_mode: API_KEY\n  display_name: Acme\nacme-cc:\n  auth_mode: OAUTH2_CC\n  token_url: https://acme.test/token\n",
			want: map[string]provider.Entry{
				"acme-key": {AuthMode: "API_KEY", DisplayName: "Acme"},
				"acme-cc":  {AuthMode: "OAUTH2_CC", DisplayName: "acme-cc", TokenURL: "https://acme.test/token", TokenAuth: provider.AuthBody},
			}},
		{name: "bad auth mode", yaml: "acme:\n  auth_mode: OAUTH3\n", wantErr: []string{`provider "acme"`, `auth_mode "OAUTH3"`}},
		{name: "token URL without OAuth 2", yaml: "acme:\n  auth_mode: BASIC\n  token_url: https://acme.test/token\n",
			wantErr: []string{`provider "acme"`, "token_url and token_auth are for"}},
		{name: "empty file", yaml: "", want: map[string]provider.Entry{"slack": builtin["slack"]}},
		{name: "comments only", yaml: "# nothing yet\n", want: map[string]provider.Entry{"zoom": builtin["zoom"]}},
		{name: "unknown key", yaml: "acme:\n  token_url: https://acme.test/token\n  tokenurl: https://acme.test/t\n",
			wantErr: []string{"tokenurl"}},
		{name: "bad URL", yaml: "acme:\n  token_url: ftp://acme.test/token\n",
			wantErr: []string{`provider "acme"`, "ftp://acme.test/token"}},
		{name: "relative URL", yaml: "acme:\n  token_url: /token\n", wantErr: []string{`provider "acme"`, "token URL"}},
		{name: "URL with credentials", yaml: "acme:\n  token_url: https://user:pw@acme.test/token\n",
			wantErr: []string{`provider "acme"`, "without credentials"}},
		{name: "missing URL", yaml: "acme:\n  token_auth: basic\n", wantErr: []string{`provider "acme"`, "token URL"}},
		{name: "bad token_auth", yaml: "acme:\n  token_url: https://acme.test/token\n  token_auth: header\n",
			wantErr: []string{`provider "acme"`, `token_auth "header"`}},
		{name: "not a map", yaml: "- acme\n", wantErr: []string{"cannot unmarshal"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "providers.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := provider.Load(path)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("Load: nil error, want one naming %v", tc.wantErr)
				}
				for _, want := range append([]string{path}, tc.wantErr...) {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("Load: %v, want it to name %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			for name, want := range tc.want {
				if got := c[name]; got != want {
					t.Errorf("%s = %+v, want %+v", name, got, want)
				}
			}
			for name := range builtin {
				if _, ok := c[name]; !ok {
					t.Errorf("the built-in entry %s is gone", name)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.yaml")
		if _, err := provider.Load(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Load: %v, want an error naming %s", err, path)
		}
	})
}

func TestCheckTokenURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://oauth2.googleapis.com/token", true},
		{"http://127.0.0.1:9999/token", true},
		{"", false},
		{"oauth2.googleapis.com/token", false},
		{"ftp://example.test/token", false},
		{"https://", false},
		{"https://u:p@example.test/token", false},
		{"://bad", false},
	} {
		err := provider.CheckTokenURL(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("CheckTokenURL(%q) = %v, want ok %v", tc.url, err, tc.ok)
		}
	}
}
