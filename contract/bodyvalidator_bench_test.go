package contract_test

import (
	"testing"

	"github.com/credport/credport/contract"
)

// benchImportBody is an import as a migration sends it: OAuth 2 tokens with a refresh token and
// an expiry, some metadata and two tags, as the server's benchmarks send it.
const benchImportBody = `{"provider_config_key":"github","connection_id":"bench-3-1234",` +
	`"credentials":{"type":"OAUTH2","access_token":"gho_16C7e42F292c6912E7710c838347Ae178B4a",` +
	`"refresh_token":"ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498",` +
	`"expires_at":"2030-06-01T12:00:00Z"},` +
	`"metadata":{"account_id":"acct_Vq3pXb8LmN2rT6yK","account_name":"Example Corporation","plan":"enterprise",` +
	`"region":"eu-west-1","imported_from":"legacy-vault","scopes":["repo","read:org","workflow","read:user"],` +
	`"seats":42,"migrated":true},` +
	`"tags":{"end_user_id":"user-8675309","organization_id":"org-4242"}}`

// BenchmarkBodyValidator is the local validation `credport import` does on each record.
func BenchmarkBodyValidator(b *testing.B) {
	v, err := contract.NewImportValidator()
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(benchImportBody)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, problem := v.Validate(body); problem != nil {
			b.Fatalf("the benchmark body is invalid: %v", problem)
		}
	}
}
