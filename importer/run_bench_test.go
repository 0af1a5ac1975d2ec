package importer_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/importer"
)

// benchRecord is one record in the body shape of the benchmark's bulk scenario.
const benchRecord = `{"provider_config_key":"github","connection_id":"bulk-%d",` +
	`"credentials":{"type":"OAUTH2","access_token":"gho_16C7e42F292c6912E7710c838347Ae178B4a",` +
	`"refresh_token":"ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498",` +
	`"expires_at":"2030-06-01T12:00:00Z"},` +
	`"metadata":{"account_id":"acct_Vq3pXb8LmN2rT6yK","plan":"enterprise","seats":42,"migrated":true},` +
	`"tags":{"end_user_id":"user-8675309","organization_id":"org-4242"}}`

// benchResult is one result of a batch answer, about the size the server answers.
const benchResult = `{"status":200,"connection":{"id":1,"connection_id":"bulk-1","provider_config_key":"github",` +
	`"provider":"github","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z",` +
	`"last_fetched_at":"2026-01-01T00:00:00Z","errors":[],"connection_config":{},` +
	`"metadata":{"account_id":"acct_Vq3pXb8LmN2rT6yK","migrated":true,"plan":"enterprise","seats":42},` +
	`"tags":{"end_user_id":"user-8675309","organization_id":"org-4242"},` +
	`"credentials":{"type":"OAUTH2","access_token":"gho_16C7e42F292c6912E7710c838347Ae178B4a",` +
	`"refresh_token":"ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498",` +
	`"expires_at":"2030-06-01T12:00:00Z","raw":{}}}}`

// BenchmarkRunBatches is the tool's own work for a file of records sent in batches: reading,
// local validation, the state file, the envelopes and reading the answers. The server answers
// each batch with canned results; µs/record compares with the server's CPU per record.
func BenchmarkRunBatches(b *testing.B) {
	const records = 5000
	var file bytes.Buffer
	for i := range records {
		fmt.Fprintf(&file, benchRecord+"\n", i)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := bytes.Count(body, []byte(`"provider_config_key"`))
		answer := make([]byte, 0, 16+n*(len(benchResult)+1))
		answer = append(answer, `{"results":[`...)
		for i := range n {
			if i > 0 {
				answer = append(answer, ',')
			}
			answer = append(answer, benchResult...)
		}
		answer = append(answer, "]}"...)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}))
	b.Cleanup(srv.Close)
	v, err := contract.NewImportValidator()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	input := filepath.Join(dir, "records.jsonl")
	if err := os.WriteFile(input, file.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		opts := importer.Options{
			Files: []string{input}, URL: srv.URL, Key: "cp_bench", Concurrency: 8, BatchSize: 200, MaxRetries: 2,
			MaxUnreachable: importer.DefaultMaxUnreachable, Validator: v, Stderr: io.Discard,
			Report: filepath.Join(dir, "report.jsonl"), State: filepath.Join(dir, "state"),
		}
		sum, err := importer.Run(context.Background(), opts)
		if err != nil || sum.Created+sum.Updated != records {
			b.Fatalf("run: %v, %+v", err, sum)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*records), "µs/record")
}
