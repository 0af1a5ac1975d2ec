package server_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkImportConnectionBatch is one POST /connections/batch of 200 imports through the whole
// server, the store aside; µs/item compares with BenchmarkImportConnection's time per import.
func BenchmarkImportConnectionBatch(b *testing.B) {
	const items = 200
	body := []byte(`{"connections":[` + strings.TrimSuffix(strings.Repeat(benchImportBody+",", items), ",") + `]}`)
	e := newBenchServer(b)
	serve := func() {
		req := httptest.NewRequest(http.MethodPost, "/connections/batch", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+benchSecret)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || bytes.Contains(rec.Body.Bytes(), []byte(`"error"`)) {
			b.Fatalf("status %d: %.300s", rec.Code, rec.Body.Bytes())
		}
	}
	serve()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		serve()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*items), "µs/item")
}
