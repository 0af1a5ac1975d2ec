package contract_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
)

func loadRules(t *testing.T) *contract.Rules {
	t.Helper()
	rules, err := contract.LoadRules()
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// TestScopes: the scopes a key may hold are openapi.yaml's, each wildcard before the scopes it
// covers, in the order the CLI and the README list them.
func TestScopes(t *testing.T) {
	t.Parallel()
	rules := loadRules(t)
	want := []string{
		"environment:*",
		"environment:connections:*",
		"environment:connections:create",
		"environment:connections:read",
		"environment:connections:read_credentials",
		"environment:connections:list",
		"environment:connections:update",
		"environment:connections:delete",
		"environment:integrations:*",
		"environment:integrations:list",
		"environment:integrations:list_credentials",
		"environment:integrations:read",
		"environment:integrations:read_credentials",
		"environment:integrations:create",
		"environment:integrations:update",
		"environment:integrations:delete",
	}
	if !slices.Equal(rules.Scopes, want) {
		t.Errorf("scopes\n%q\nwant\n%q", rules.Scopes, want)
	}
	for _, s := range want {
		if !rules.ValidScope(s) || !contract.Grants([]string{contract.FullAccess}, s) {
			t.Errorf("%s: valid %v, granted by %s %v", s, rules.ValidScope(s), contract.FullAccess,
				contract.Grants([]string{contract.FullAccess}, s))
		}
	}
	for _, s := range []string{"", "admin", "environment", "environment:connections:destroy", "environment:connections", "*"} {
		if rules.ValidScope(s) {
			t.Errorf("%q is valid", s)
		}
	}
	for _, tc := range []struct {
		held     []string
		required string
		want     bool
	}{
		{[]string{"environment:connections:*"}, "environment:connections:read", true},
		{[]string{"environment:connections:*"}, "environment:integrations:read", false},
		{[]string{"environment:connections:read"}, "environment:connections:read_credentials", false},
		{[]string{"environment:connections:read", "environment:integrations:*"}, "environment:integrations:delete", true},
		{nil, "environment:connections:read", false},
	} {
		if got := contract.Grants(tc.held, tc.required); got != tc.want {
			t.Errorf("Grants(%q, %q) = %v, want %v", tc.held, tc.required, got, tc.want)
		}
	}
}

// TestRulesRefuseADriftingSpec: a spec whose operations, scopes or flags disagree is refused
// when it is read, rather than served with rules that no longer match it.
func TestRulesRefuseADriftingSpec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(doc *openapi3.T)
		want   string
	}{
		{"an operation asks for an undeclared scope", func(doc *openapi3.T) {
			op := doc.Paths.Value("/connections").Get
			op.Security = &openapi3.SecurityRequirements{{contract.BearerScheme: {"environment:connections:peek"}}}
		}, `asks for scope "environment:connections:peek"`},
		{"a declared scope no operation asks for", func(doc *openapi3.T) {
			ext := doc.Components.SecuritySchemes[contract.BearerScheme].Value.Extensions
			ext["x-scopes"] = append(ext["x-scopes"].([]any), "environment:connections:peek")
		}, `scope "environment:connections:peek" is declared but no operation asks for it`},
		{"a scope outside full access", func(doc *openapi3.T) {
			ext := doc.Components.SecuritySchemes[contract.BearerScheme].Value.Extensions
			ext["x-scopes"] = append(ext["x-scopes"].([]any), "account:read")
			doc.Paths.Value("/connections").Get.Security = &openapi3.SecurityRequirements{
				{contract.BearerScheme: {"environment:connections:list"}}, {contract.BearerScheme: {"account:read"}}}
		}, `scope "account:read" is not under environment:*`},
		{"no declared scopes", func(doc *openapi3.T) {
			delete(doc.Components.SecuritySchemes[contract.BearerScheme].Value.Extensions, "x-scopes")
		}, "no x-scopes list"},
		{"a flag word the pattern refuses", func(doc *openapi3.T) {
			ext := doc.Components.Schemas["StringBool"].Value.Extensions
			ext["x-true"] = append(ext["x-true"].([]any), "sure")
			ext["x-false"] = append(ext["x-false"].([]any), "nope")
		}, `does not accept "sure"`},
		{"flag words that do not pair", func(doc *openapi3.T) {
			ext := doc.Components.Schemas["StringBool"].Value.Extensions
			ext["x-false"] = ext["x-false"].([]any)[1:]
		}, "do not pair"},
		{"a credentials type that is no auth mode", func(doc *openapi3.T) {
			p := doc.Components.Schemas["CreateIntegrationRequest"].Value.Properties["auth_mode"].Value
			p.Enum = slices.DeleteFunc(slices.Clone(p.Enum), func(v any) bool { return v == "TBA" })
		}, "credentials type TBA is no auth mode"},
		{"a credentials type without a stored form", func(doc *openapi3.T) {
			all := doc.Components.Schemas["AllAuthCredentials"].Value
			all.AnyOf = slices.DeleteFunc(slices.Clone(all.AnyOf), func(r *openapi3.SchemaRef) bool { return r.Value.Title == "TBA" })
		}, `no member titled "TBA"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := contract.Load()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := contract.NewRules(doc); err != nil {
				t.Fatalf("before the change: %v", err)
			}
			tc.change(doc)
			_, err = contract.NewRules(doc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// TestBool: a query flag is true for StringBool's true words in any case, false for the rest and
// when absent.
func TestBool(t *testing.T) {
	t.Parallel()
	rules := loadRules(t)
	for _, tc := range []struct {
		in   *string
		want bool
	}{
		{nil, false},
		{ptr("true"), true}, {ptr("TRUE"), true}, {ptr("1"), true}, {ptr("Yes"), true}, {ptr("on"), true},
		{ptr("Y"), true}, {ptr("enabled"), true},
		{ptr("false"), false}, {ptr("0"), false}, {ptr("no"), false}, {ptr("OFF"), false}, {ptr("n"), false},
		{ptr("Disabled"), false}, {ptr(""), false},
	} {
		var v *gen.StringBool
		if tc.in != nil {
			v = tc.in
		}
		if got := rules.Bool(v); got != tc.want {
			t.Errorf("Bool(%v) = %v, want %v", deref(tc.in), got, tc.want)
		}
	}
}

// TestAuthModesAndCredentialPolicies: the auth modes are CreateIntegrationRequest's, in its
// order; the credentials stored with raw are those whose stored form declares raw, and NONE
// stores nothing.
func TestAuthModesAndCredentialPolicies(t *testing.T) {
	t.Parallel()
	rules := loadRules(t)
	if want := []string{"OAUTH1", "OAUTH2", "OAUTH2_CC", "API_KEY", "BASIC", "TBA", "APP", "NONE"}; !slices.Equal(rules.AuthModes, want) {
		t.Errorf("auth modes %q, want %q", rules.AuthModes, want)
	}
	want := map[string]contract.CredentialPolicy{
		"OAUTH1": {Raw: true}, "OAUTH2": {Raw: true}, "OAUTH2_CC": {Raw: true},
		"API_KEY": {}, "BASIC": {}, "TBA": {}, "NONE": {Empty: true},
		// An APP import stores the token minted for it, with GitHub's answer under raw.
		"APP": {Raw: true},
	}
	if len(rules.CredentialPolicies) != len(want) {
		t.Errorf("policies %v, want %v", rules.CredentialPolicies, want)
	}
	for typ, p := range want {
		if got, ok := rules.CredentialPolicies[typ]; !ok || got != p {
			t.Errorf("%s: policy %+v (declared %v), want %+v", typ, got, ok, p)
		}
	}
}

func ptr(s string) *string { return &s }

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
