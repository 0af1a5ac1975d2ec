// Package provider knows where OAuth 2 providers renew tokens and renews them there.
package provider

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"sort"

	"go.yaml.in/yaml/v3"
)

// ProvidersFileEnv names the YAML file whose entries are added to the built-in catalog or replace
// its entries.
const ProvidersFileEnv = "CREDPORT_PROVIDERS_FILE"

// How a client authenticates to a token URL.
const (
	AuthBody  = "body"
	AuthBasic = "basic"
)

//go:embed providers.yaml
var builtinYAML []byte

// Entry is one provider: how its integrations authenticate and, for OAuth 2, its token endpoint.
type Entry struct {
	// AuthMode is the auth mode of the provider's integrations; default OAUTH2.
	AuthMode string `yaml:"auth_mode"`
	// DisplayName names the provider to people; default the provider's name.
	DisplayName string `yaml:"display_name"`
	// TokenURL and TokenAuth are where and how OAUTH2 and OAUTH2_CC tokens are renewed; the
	// other modes have none.
	TokenURL  string `yaml:"token_url"`
	TokenAuth string `yaml:"token_auth"`
}

// AuthModes are the auth modes an integration may have.
var AuthModes = []string{"OAUTH1", "OAUTH2", "OAUTH2_CC", "API_KEY", "BASIC", "TBA", "APP", "NONE"}

// Catalog maps provider names to their entries.
type Catalog map[string]Entry

// Builtin is the catalog shipped with credport.
func Builtin() (Catalog, error) {
	c, err := parseCatalog(bytes.NewReader(builtinYAML))
	if err != nil {
		return nil, fmt.Errorf("built-in provider catalog: %w", err)
	}
	return c, nil
}

// Load is the built-in catalog with the entries of the file at path added or replaced; path ""
// means the built-in catalog alone.
func Load(path string) (Catalog, error) {
	c, err := Builtin()
	if err != nil || path == "" {
		return c, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("provider catalog: %w", err)
	}
	defer f.Close()
	extra, err := parseCatalog(f)
	if err != nil {
		return nil, fmt.Errorf("provider catalog %s: %w", path, err)
	}
	for name, e := range extra {
		c[name] = e
	}
	return c, nil
}

// Names lists the catalog's providers in order.
func (c Catalog) Names() []string {
	names := make([]string, 0, len(c))
	for name := range c {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func parseCatalog(r io.Reader) (Catalog, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	c := Catalog{}
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	for name, e := range c {
		if e.AuthMode == "" {
			e.AuthMode = "OAUTH2"
		}
		if e.DisplayName == "" {
			e.DisplayName = name
		}
		if e.TokenAuth == "" && e.TokenURL != "" {
			e.TokenAuth = AuthBody
		}
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("provider %q: %w", name, err)
		}
		c[name] = e
	}
	return c, nil
}

func (e Entry) check() error {
	if !slices.Contains(AuthModes, e.AuthMode) {
		return fmt.Errorf("auth_mode %q: want one of %v", e.AuthMode, AuthModes)
	}
	if e.AuthMode != "OAUTH2" && e.AuthMode != "OAUTH2_CC" {
		if e.TokenURL != "" || e.TokenAuth != "" {
			return fmt.Errorf("token_url and token_auth are for auth modes OAUTH2 and OAUTH2_CC, not %s", e.AuthMode)
		}
		return nil
	}
	if err := CheckTokenURL(e.TokenURL); err != nil {
		return err
	}
	if e.TokenAuth != AuthBody && e.TokenAuth != AuthBasic {
		return fmt.Errorf("token_auth %q: want %s or %s", e.TokenAuth, AuthBody, AuthBasic)
	}
	return nil
}

// CheckTokenURL tells whether s can be a token URL: absolute http(s), without credentials.
func CheckTokenURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return fmt.Errorf("token URL %q: want an absolute http(s) URL without credentials", s)
	}
	return nil
}
