package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/credport/credport/gen"
)

// testdata/openapi.seed.yaml is a verbatim copy of the seed document openapi.yaml was derived
// from. Every POST /connections answer is validated against it as well, with the errata of
// docs/errata.md that concern that answer applied here, and only those:
//
//   - 7: the statuses beside 200 and 400 answer StdError too;
//   - 13: TbaCredentials.config_override is optional;
//   - 17, 18: the *WithRaw credentials are flattened into one object that declares raw (the
//     seed's allOf of two closed objects matches nothing);
//   - 19: ConnectionFull is closed, id is an int64, the three timestamps are date-times;
//   - 22: StdError requires error;
//   - 40: AllAuthCredentials also offers AppCredentialsWithheld, copied from openapi.yaml.
//
// The others change nothing an import answers: 20 and 21 change no validation, 24 is about GET
// and the list (whose end user's tags may be null), and the rest concern requests.

// seedContract is the patched seed document, loaded once.
var seedContract = sync.OnceValues(func() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromFile("testdata/openapi.seed.yaml")
	if err != nil {
		return nil, fmt.Errorf("load the seed: %w", err)
	}
	schemas := doc.Components.Schemas
	schema := func(name string) *openapi3.Schema {
		ref := schemas[name]
		if ref == nil || ref.Value == nil {
			panic("the seed has no schema " + name)
		}
		return ref.Value
	}
	// Errata 17 and 18.
	for _, name := range []string{"OAuth1CredentialsWithRaw", "OAuth2CredentialsWithRaw", "OAuth2ClientCredentialsWithRaw",
		"AppStoreCredentialsWithRaw", "BillCredentialsWithRaw"} {
		withRaw := schema(name)
		flat := *withRaw.AllOf[0].Value
		flat.Properties = openapi3.Schemas{}
		for k, v := range withRaw.AllOf[0].Value.Properties {
			flat.Properties[k] = v
		}
		flat.Properties["raw"] = openapi3.NewSchemaRef("", openapi3.NewObjectSchema())
		flat.Required = append(slices.Clone(flat.Required), "raw")
		if slices.Contains(withRaw.AllOf[0].Value.Required, "raw") {
			flat.Required = flat.Required[:len(flat.Required)-1]
		}
		flat.Title = withRaw.Title
		*withRaw = flat
	}
	// Erratum 13.
	tba := schema("TbaCredentials")
	tba.Required = slices.DeleteFunc(slices.Clone(tba.Required), func(s string) bool { return s == "config_override" })
	// Erratum 19.
	full := schema("ConnectionFull")
	full.AdditionalProperties = openapi3.AdditionalProperties{Has: new(bool)}
	full.Properties["id"].Value.Format = "int64"
	for _, k := range []string{"created_at", "updated_at", "last_fetched_at"} {
		full.Properties[k].Value.Format = "date-time"
	}
	// Erratum 22.
	schema("StdError").Required = []string{"error"}
	// Erratum 40.
	ours, err := gen.GetSpec()
	if err != nil {
		return nil, err
	}
	withheld := ours.Components.Schemas["AppCredentialsWithheld"]
	if withheld == nil {
		return nil, fmt.Errorf("openapi.yaml has no AppCredentialsWithheld")
	}
	all := schema("AllAuthCredentials")
	all.AnyOf = append(all.AnyOf, openapi3.NewSchemaRef("", withheld.Value))
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the patched seed: %w", err)
	}
	return doc, nil
})

// checkSeedContract validates a POST /connections answer against the patched seed: a 200 body
// against ConnectionFull, any other against StdError.
func (v *env) checkSeedContract(res response) {
	v.t.Helper()
	doc, err := seedContract()
	if err != nil {
		v.t.Fatal(err)
	}
	name := "StdError"
	if res.status == http.StatusOK {
		name = "ConnectionFull"
	}
	var body any
	if err := json.Unmarshal(res.body, &body); err != nil {
		v.t.Fatalf("POST /connections answered %d with a body that is not JSON: %v", res.status, err)
	}
	if err := doc.Components.Schemas[name].Value.VisitJSON(body, openapi3.MultiErrors()); err != nil {
		v.t.Fatalf("POST /connections answered %d %s, which the seed's %s (with the errata) does not allow: %v",
			res.status, res.body, name, err)
	}
}
