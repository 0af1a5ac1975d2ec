package contract

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/credport/credport/gen"
)

// Rules are what the code needs to know of openapi.yaml beside validation, read from it so that
// no copy can drift from it.
type Rules struct {
	// Scopes are the scopes an API key may hold, wildcards first (see scopes).
	Scopes []string
	// AuthModes are the auth modes an integration may have, as CreateIntegrationRequest lists them.
	AuthModes []string
	// CredentialPolicies say how imported credentials of each type are stored.
	CredentialPolicies map[string]CredentialPolicy
	trueWords          []string
}

// CredentialPolicy says how imported credentials of one type are stored: as the connection's
// credentials of that type declare them among AllAuthCredentials, the member of the same title.
type CredentialPolicy struct {
	// Raw adds the input as sent under "raw": the stored form declares raw.
	Raw bool
	// Empty stores {} whatever was sent: the stored form declares no property.
	Empty bool
}

// NewRules reads the rules of doc.
func NewRules(doc *openapi3.T) (*Rules, error) {
	r := &Rules{}
	var err error
	if r.Scopes, err = scopes(doc); err != nil {
		return nil, err
	}
	if r.CredentialPolicies, err = credentialPolicies(doc); err != nil {
		return nil, err
	}
	if r.AuthModes, err = authModes(doc, r.CredentialPolicies); err != nil {
		return nil, err
	}
	stringBool, err := schemaNamed(doc, "StringBool")
	if err != nil {
		return nil, err
	}
	if r.trueWords, _, err = booleanWords(stringBool); err != nil {
		return nil, err
	}
	return r, nil
}

// LoadRules reads the rules of the embedded openapi.yaml.
func LoadRules() (*Rules, error) {
	doc, err := Load()
	if err != nil {
		return nil, err
	}
	return NewRules(doc)
}

// ValidScope tells whether s is one of Scopes.
func (r *Rules) ValidScope(s string) bool { return slices.Contains(r.Scopes, s) }

// Bool reads a query flag that the validator has already checked against StringBool: absent
// is false.
func (r *Rules) Bool(v *gen.StringBool) bool {
	return v != nil && slices.Contains(r.trueWords, strings.ToLower(*v))
}

// booleanWords are the words schema (a StringBool) reads as true and as false, in pairs: its
// x-true and x-false, each of which its pattern must accept in any case.
func booleanWords(schema *openapi3.Schema) (trueWords, falseWords []string, err error) {
	if trueWords, err = stringList(schema.Extensions, "x-true"); err != nil {
		return nil, nil, fmt.Errorf("openapi.yaml: StringBool: %w", err)
	}
	if falseWords, err = stringList(schema.Extensions, "x-false"); err != nil {
		return nil, nil, fmt.Errorf("openapi.yaml: StringBool: %w", err)
	}
	if len(trueWords) != len(falseWords) {
		return nil, nil, fmt.Errorf("openapi.yaml: StringBool: x-true and x-false do not pair")
	}
	re, err := regexp.Compile(schema.Pattern)
	if err != nil {
		return nil, nil, fmt.Errorf("openapi.yaml: StringBool pattern: %w", err)
	}
	for _, w := range append(slices.Clone(trueWords), falseWords...) {
		if w != strings.ToLower(w) || !re.MatchString(w) || !re.MatchString(strings.ToUpper(w)) {
			return nil, nil, fmt.Errorf("openapi.yaml: StringBool's pattern does not accept %q in any case", w)
		}
	}
	return trueWords, falseWords, nil
}

// booleanMessage says what a StringBool must be, or "" when schema is not one.
func booleanMessage(schema *openapi3.Schema) string {
	if _, ok := schema.Extensions["x-true"]; !ok {
		return ""
	}
	t, f, err := booleanWords(schema)
	if err != nil {
		return ""
	}
	pairs := make([]string, 0, len(t)-1)
	for i := 1; i < len(t); i++ {
		pairs = append(pairs, t[i]+" or "+f[i])
	}
	return "must be " + t[0] + " or " + f[0] + " (also accepted: " + strings.Join(pairs, ", ") + ")"
}

// credentialPolicies derive, for each type of ImportCredentials, how it is stored.
func credentialPolicies(doc *openapi3.T) (map[string]CredentialPolicy, error) {
	variants, err := ImportCredentialVariants(doc)
	if err != nil {
		return nil, err
	}
	stored, err := schemaNamed(doc, "AllAuthCredentials")
	if err != nil {
		return nil, err
	}
	out := map[string]CredentialPolicy{}
	for typ, variant := range variants {
		var form *openapi3.Schema
		for _, m := range stored.AnyOf {
			if m.Value != nil && m.Value.Title == variant.Title {
				form = m.Value
				break
			}
		}
		if form == nil {
			return nil, fmt.Errorf("openapi.yaml: AllAuthCredentials has no member titled %q, the stored form of %s", variant.Title, typ)
		}
		_, raw := form.Properties["raw"]
		out[typ] = CredentialPolicy{Raw: raw, Empty: len(form.Properties) == 0}
	}
	return out, nil
}

// ImportCredentialVariants are the schemas of ImportCredentials by the type that selects them.
func ImportCredentialVariants(doc *openapi3.T) (map[string]*openapi3.Schema, error) {
	union, err := schemaNamed(doc, "ImportCredentials")
	if err != nil {
		return nil, err
	}
	if union.Discriminator == nil {
		return nil, fmt.Errorf("openapi.yaml: ImportCredentials has no discriminator")
	}
	out := map[string]*openapi3.Schema{}
	for name, m := range union.Discriminator.Mapping {
		for _, member := range append(slices.Clone(union.OneOf), union.AnyOf...) {
			if member.Ref == m.Ref && member.Value != nil {
				out[name] = member.Value
			}
		}
		if out[name] == nil {
			return nil, fmt.Errorf("openapi.yaml: ImportCredentials maps %s to no member", name)
		}
	}
	return out, nil
}

// authModes are the auth modes CreateIntegrationRequest lists, which must cover every type of
// credentials an import may name.
func authModes(doc *openapi3.T, types map[string]CredentialPolicy) ([]string, error) {
	create, err := schemaNamed(doc, "CreateIntegrationRequest")
	if err != nil {
		return nil, err
	}
	prop := create.Properties["auth_mode"]
	if prop == nil || prop.Value == nil || len(prop.Value.Enum) == 0 {
		return nil, fmt.Errorf("openapi.yaml: CreateIntegrationRequest.auth_mode lists no auth modes")
	}
	out := make([]string, 0, len(prop.Value.Enum))
	for _, v := range prop.Value.Enum {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("openapi.yaml: CreateIntegrationRequest.auth_mode lists %v, not a string", v)
		}
		out = append(out, s)
	}
	for typ := range types {
		if !slices.Contains(out, typ) {
			return nil, fmt.Errorf("openapi.yaml: credentials type %s is no auth mode of CreateIntegrationRequest", typ)
		}
	}
	return out, nil
}
