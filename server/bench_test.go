package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
)

// The benchmarks below measure the CPU of one import without a database: the whole Echo stack
// (request id, logging, metrics, auth, validation, handler, response) against an in-memory store,
// and the validation and response encoding alone. Sealing is measured in the store package.

const benchSecret = "cp_benchmark-secret"

// benchImportBody is an import as a migration sends it: OAuth 2 tokens with a refresh token and an
// expiry, some metadata and two tags; about 600 bytes, like the load of bench/.
const benchImportBody = `{"provider_config_key":"github","connection_id":"bench-3-1234",` +
	`"credentials":{"type":"OAUTH2","access_token":"gho_16C7e42F292c6912E7710c838347Ae178B4a",` +
	`"refresh_token":"ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498",` +
	`"expires_at":"2030-06-01T12:00:00Z"},` +
	`"metadata":{"account_id":"acct_Vq3pXb8LmN2rT6yK","account_name":"Example Corporation","plan":"enterprise",` +
	`"region":"eu-west-1","imported_from":"legacy-vault","scopes":["repo","read:org","workflow","read:user"],` +
	`"seats":42,"migrated":true},` +
	`"tags":{"end_user_id":"user-8675309","organization_id":"org-4242"}}`

// benchStore is a Store that keeps nothing: one key, one OAUTH2 integration, and upserts that
// answer as an insert would.
type benchStore struct {
	noProviderCalls
	key         store.APIKey
	integration store.Integration
	nextID      atomic.Int64
}

func newBenchStore() *benchStore {
	return &benchStore{
		key: store.APIKey{
			ID: 1, EnvironmentID: 1, Environment: "bench", Name: "bench",
			Scopes: []string{contract.FullAccess}, SecretHash: store.HashSecret(benchSecret),
		},
		integration: store.Integration{ID: 1, EnvironmentID: 1, UniqueKey: "github", Provider: "github", AuthMode: "OAUTH2"},
	}
}

func (s *benchStore) FindAPIKeyBySecretHash(_ context.Context, hash string) (store.APIKey, error) {
	if hash != s.key.SecretHash {
		return store.APIKey{}, store.ErrNotFound
	}
	return s.key, nil
}

func (s *benchStore) FindIntegration(_ context.Context, envID int64, uniqueKey string) (store.Integration, error) {
	if envID != s.integration.EnvironmentID || uniqueKey != s.integration.UniqueKey {
		return store.Integration{}, store.ErrNotFound
	}
	return s.integration, nil
}

func (s *benchStore) UpsertConnection(_ context.Context, in store.UpsertConnection) (store.Connection, error) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	orEmpty := func(v json.RawMessage) json.RawMessage {
		if v == nil {
			return json.RawMessage(`{}`)
		}
		return v
	}
	return store.Connection{
		ID:                s.nextID.Add(1),
		ConnectionID:      in.ConnectionID,
		ProviderConfigKey: in.Integration.UniqueKey,
		Provider:          in.Integration.Provider,
		Credentials:       in.Credentials,
		ConnectionConfig:  orEmpty(in.ConnectionConfig),
		Metadata:          orEmpty(in.Metadata),
		Tags:              orEmpty(in.Tags),
		EndUser:           in.EndUser,
		CreatedAt:         now,
		UpdatedAt:         now,
		LastFetchedAt:     now,
		Created:           true,
	}, nil
}

func (s *benchStore) Ping(context.Context) error { return nil }

// The benchmarks only import: the read side finds nothing.
func (s *benchStore) GetConnection(context.Context, store.ReadConnection) (store.Connection, error) {
	return store.Connection{}, store.ErrNotFound
}

func (s *benchStore) DeleteConnection(context.Context, int64, string, string) error {
	return store.ErrNotFound
}

func (s *benchStore) ListConnections(context.Context, store.ListConnections, func(store.ListedConnection) error) error {
	return nil
}

func newBenchServer(b *testing.B) *echo.Echo {
	b.Helper()
	e, err := server.New(server.Config{Store: newBenchStore()})
	if err != nil {
		b.Fatalf("server.New: %v", err)
	}
	return e
}

func benchImportRequest(b *testing.B, body string) *http.Request {
	req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1/connections", bytes.NewReader([]byte(body)))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+benchSecret)
	req.Header.Set("Content-Type", "application/json")
	return req
}

// benchServe sends one import through e and fails unless it is answered with want.
func benchServe(b *testing.B, e *echo.Echo, body string, want int) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, benchImportRequest(b, body))
	if rec.Code != want {
		b.Fatalf("status %d, want %d: %s", rec.Code, want, rec.Body.Bytes())
	}
	return rec
}

// BenchmarkImportConnection is one POST /connections through the whole server, the store aside.
func BenchmarkImportConnection(b *testing.B) {
	e := newBenchServer(b)
	benchServe(b, e, benchImportBody, http.StatusOK) // warm the key cache
	b.SetBytes(int64(len(benchImportBody)))
	b.ReportAllocs()
	for b.Loop() {
		benchServe(b, e, benchImportBody, http.StatusOK)
	}
}

// BenchmarkImportConnectionParallel is the same from GOMAXPROCS goroutines, which shows shared
// locks (key cache, metrics, logger).
func BenchmarkImportConnectionParallel(b *testing.B) {
	e := newBenchServer(b)
	benchServe(b, e, benchImportBody, http.StatusOK)
	b.SetBytes(int64(len(benchImportBody)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, benchImportRequest(b, benchImportBody))
			if rec.Code != http.StatusOK {
				b.Errorf("status %d: %s", rec.Code, rec.Body.Bytes())
				return
			}
		}
	})
}

// BenchmarkImportConnectionInvalid is an import that validation refuses (an empty access token):
// the stack up to and including validation, and an error response, without the handler.
func BenchmarkImportConnectionInvalid(b *testing.B) {
	body := bytes.Replace([]byte(benchImportBody), []byte(`"access_token":"gho_16C7e42F292c6912E7710c838347Ae178B4a"`),
		[]byte(`"access_token":""`), 1)
	e := newBenchServer(b)
	benchServe(b, e, string(body), http.StatusBadRequest)
	b.ReportAllocs()
	for b.Loop() {
		benchServe(b, e, string(body), http.StatusBadRequest)
	}
}

// BenchmarkValidateImportBody is the schema validation of openapi.yaml's ImportConnectionRequest
// alone, on the decoded body, with the options the server validates with.
func BenchmarkValidateImportBody(b *testing.B) {
	spec, err := gen.GetSpec()
	if err != nil {
		b.Fatal(err)
	}
	ref := spec.Components.Schemas["ImportConnectionRequest"]
	if ref == nil || ref.Value == nil {
		b.Fatal("openapi.yaml declares no ImportConnectionRequest")
	}
	schema := ref.Value
	opts := []openapi3.SchemaValidationOption{openapi3.MultiErrors(), openapi3.VisitAsRequest()}
	value := benchDecode(b, []byte(benchImportBody))
	if err := schema.VisitJSON(value, opts...); err != nil {
		b.Fatalf("the benchmark body is invalid: %v", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := schema.VisitJSON(value, opts...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeImportBody is the JSON decoding the validator does before it validates.
func BenchmarkDecodeImportBody(b *testing.B) {
	data := []byte(benchImportBody)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		benchDecode(b, data)
	}
}

func benchDecode(b *testing.B, data []byte) any {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkEncodeConnectionFull is the response encoding: the ConnectionFull of an import,
// written as the generated handler writes it.
func BenchmarkEncodeConnectionFull(b *testing.B) {
	rec := benchServe(b, newBenchServer(b), benchImportBody, http.StatusOK)
	var full gen.ConnectionFull
	if err := json.Unmarshal(rec.Body.Bytes(), &full); err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(full); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := json.NewEncoder(&buf).Encode(full); err != nil {
			b.Fatal(err)
		}
	}
}

func (s *benchStore) PatchConnection(context.Context, store.PatchConnection) error {
	return store.ErrNotFound
}

func (s *benchStore) SetMetadata(context.Context, int64, string, []string, json.RawMessage, bool) error {
	return store.ErrNotFound
}
