package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// batchItems are items of every kind: valid ones of several integrations, schema errors, rule
// errors, items POST /connections refuses before its schema (JSON, size), and repeated keys.
var batchItems = []string{
	`{"provider_config_key":"github","connection_id":"b-1","credentials":{"type":"OAUTH2","access_token":"batch-tok-0001","refresh_token":"batch-ref-0001","expires_at":"2030-01-02T03:04:05Z"},"metadata":{"n":1.50},"tags":{"team":"core"},"end_user":{"id":"u1","email":"u1@example.com"}}`,
	`{"provider_config_key":"stripe","connection_id":"b-2","credentials":{"type":"API_KEY","apiKey":"batch-key-0002"}}`,
	`{"provider_config_key":"github","connection_id":"b-3","credentials":{"type":"OAUTH2"}}`,
	`{"provider_config_key":"nowhere","connection_id":"b-4","credentials":{"type":"API_KEY","apiKey":"batch-key-0004"}}`,
	`{"provider_config_key":"github","connection_id":"b-5","credentials":{"type":"API_KEY","apiKey":"batch-key-0005"}}`,
	`{"provider_config_key":"netsuite","connection_id":"b-6","credentials":{"type":"TBA","token_id":"batch-tid-0006","token_secret":"batch-tsc-0006"}}`,
	`{"provider_config_key":"stripe","connection_id":"b-7","connection_id":"b-7","credentials":{"type":"API_KEY","apiKey":"batch-key-0007"}}`,
	`{"provider_config_key":"stripe","connection_id":"b-8","credentials":{"type":"API_KEY","apiKey":"batch-key-0008"},"metadata":{"k":"a\u0000b"}}`,
	`3`,
	`{"provider_config_key":"github","connection_id":"b-1","credentials":{"type":"OAUTH2","access_token":"batch-tok-0010"},"metadata":{"second":true}}`,
	`{"provider_config_key":"stripe","credentials":{"type":"API_KEY","apiKey":"batch-key-0011"}}`,
	`{"provider_config_key":"stripe","connection_id":"b-12","credentials":{"type":"API_KEY","apiKey":"batch-key-0012"},"tags":{"Team":"a","team":"b"}}`,
	`{"provider_config_key":"stripe","connection_id":"b-13","credentials":{"type":"API_KEY","apiKey":"batch-key-0013"},"metadata":{"big":"` + strings.Repeat("x", 5000) + `"}}`,
	`{"provider_config_key":"netsuite","connection_id":"b-6","credentials":{"type":"TBA","token_id":"batch-tid-0014","token_secret":"batch-tsc-0014"},"connection_config":{"accountId":"42"}}`,
	`{"provider_config_key":"github","connection_id":"b-1","credentials":{"type":"OAUTH2","access_token":"batch-tok-0015"},"extra":1}`,
	`{"provider_config_key":"stripe","connection_id":"b-2","credentials":{"type":"API_KEY","apiKey":"batch-key-0016"},"metadata":{"third":3}}`,
}

// batchConfig keeps single bodies small, so that one item is over the limit.
var batchConfig = server.Config{MaxBodyBytes: 4096}

func newBatchEnv(t *testing.T, b storetest.Backend) *env {
	t.Helper()
	v := newEnvWith(t, storetest.Open(t, b), batchConfig)
	v.integration("dev", "github", "OAUTH2")
	v.integration("dev", "stripe", "API_KEY")
	v.integration("dev", "netsuite", "TBA")
	return v
}

func batchBody(items []string) string {
	return `{"connections":[` + strings.Join(items, ",") + `]}`
}

// batchResult is one decoded result.
type batchResult struct {
	Status     int             `json:"status"`
	Connection json.RawMessage `json:"connection"`
	Error      json.RawMessage `json:"error"`
}

func batchResults(t *testing.T, res response, want int) []batchResult {
	t.Helper()
	if res.status != http.StatusOK {
		t.Fatalf("batch: status %d: %s", res.status, res.body)
	}
	if cc := res.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	var body struct {
		Results []batchResult `json:"results"`
	}
	if err := json.Unmarshal(res.body, &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Results) != want {
		t.Fatalf("%d results, want %d", len(body.Results), want)
	}
	return body.Results
}

// comparable is a connection without what differs between two stores (row ids, times) and,
// when generated, its connection id.
func comparable(t *testing.T, data []byte, generatedID bool) string {
	t.Helper()
	m := decodeObject(t, data)
	for _, k := range []string{"id", "created_at", "updated_at", "last_fetched_at"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("connection without %s: %s", k, data)
		}
		delete(m, k)
	}
	if generatedID {
		delete(m, "connection_id")
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestImportBatchAnswersAsAlone checks that every item of a batch, valid or not, of any
// integration, repeated or not, is answered as POST /connections answers the same body alone,
// on a second store that receives the items one by one in the same order.
func TestImportBatchAnswersAsAlone(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		batch, alone := newBatchEnv(t, b), newBatchEnv(t, b)
		results := batchResults(t, batch.do(request{path: "/connections/batch", body: batchBody(batchItems)}), len(batchItems))
		for i, item := range batchItems {
			res := alone.do(request{body: item})
			got := results[i]
			if got.Status != res.status {
				t.Errorf("item %d: status %d, alone %d: %s", i, got.Status, res.status, res.body)
				continue
			}
			if res.status != http.StatusOK {
				var want struct {
					Error json.RawMessage `json:"error"`
				}
				if err := json.Unmarshal(res.body, &want); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(compact(t, got.Error), compact(t, want.Error)) {
					t.Errorf("item %d: error %s, alone %s", i, got.Error, want.Error)
				}
				continue
			}
			generated := !strings.Contains(item, `"connection_id"`)
			if g, w := comparable(t, got.Connection, generated), comparable(t, res.body, generated); g != w {
				t.Errorf("item %d: connection\n%s\nalone\n%s", i, g, w)
			}
			// Created or updated as alone: the answer's times tell.
			if g, w := isCreated(t, got.Connection), isCreated(t, res.body); g != w {
				t.Errorf("item %d: created %v, alone %v", i, g, w)
			}
		}
		// The repeated keys were applied in request order: the last item of each is stored.
		for id, want := range map[string]string{"b-1": "batch-tok-0010", "b-2": "batch-key-0016", "b-6": "batch-tid-0014"} {
			pck := map[string]string{"b-1": "github", "b-2": "stripe", "b-6": "netsuite"}[id]
			res := batch.getConn(id, "provider_config_key="+pck)
			if res.status != http.StatusOK || !strings.Contains(string(res.body), want) {
				t.Errorf("%s: %d %s, want %s stored", id, res.status, res.body, want)
			}
		}
		// The imports are counted by outcome and type as if each had come alone.
		if g, w := importMetrics(batch), importMetrics(alone); g != w || !strings.Contains(g, `outcome="rejected"`) {
			t.Errorf("import metrics of the batch:\n%s\nalone:\n%s", g, w)
		}
		if n := len(batch.listIDs("")); n != len(alone.listIDs("")) || n != 4 {
			t.Errorf("%d connections stored by the batch, %d alone, want 4", n, len(alone.listIDs("")))
		}
	})
}

func compact(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func isCreated(t *testing.T, data []byte) bool {
	t.Helper()
	m := decodeObject(t, data)
	return m["created_at"] == m["updated_at"]
}

// TestImportBatchLimits checks the envelope: 1 to 1000 items, its own body limit, and 400
// invalid_body for any other shape.
func TestImportBatchLimits(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		cfg := server.Config{MaxBodyBytes: 4096, MaxBatchBodyBytes: 200 << 10}
		v := newEnvWith(t, storetest.Open(t, b), cfg)
		v.integration("dev", "stripe", "API_KEY")
		items := func(n int) []string {
			out := make([]string, n)
			for i := range out {
				out[i] = fmt.Sprintf(`{"provider_config_key":"stripe","connection_id":"l-%d","credentials":{"type":"API_KEY","apiKey":"k"}}`, i)
			}
			return out
		}
		post := func(body string) response { return v.do(request{path: "/connections/batch", body: body}) }

		results := batchResults(t, post(batchBody(items(1000))), 1000)
		for i, r := range results {
			if r.Status != http.StatusOK {
				t.Fatalf("item %d: %d %s", i, r.Status, r.Error)
			}
		}
		if n := len(v.listIDs("limit=2000")); n != 1000 {
			t.Errorf("%d stored, want 1000", n)
		}
		e := wantError(t, post(batchBody(items(1001))), http.StatusBadRequest, "invalid_body")
		checkErrorsAt(t, e.errors, "connections")
		e = wantError(t, post(batchBody(nil)), http.StatusBadRequest, "invalid_body")
		checkErrorsAt(t, e.errors, "connections")

		// Over the batch limit: 413. Over the single limit but within the batch's: served.
		big := batchBody(items(1000)) + strings.Repeat(" ", 200<<10)
		wantError(t, post(big), http.StatusRequestEntityTooLarge, "payload_too_large")
		if int64(len(batchBody(items(100)))) <= cfg.MaxBodyBytes {
			t.Fatal("the 100-item batch is within the single body limit")
		}
		batchResults(t, post(batchBody(items(100))), 100)

		for name, body := range map[string]string{
			"array":            `[]`,
			"no connections":   `{}`,
			"not an array":     `{"connections":{}}`,
			"unknown member":   `{"connections":[{}],"more":1}`,
			"string":           `"connections"`,
			"null connections": `{"connections":null}`,
		} {
			t.Run(name, func(t *testing.T) {
				wantError(t, v.on(t).do(request{path: "/connections/batch", body: body}), http.StatusBadRequest, "invalid_body")
			})
		}
		for name, body := range map[string]string{
			"truncated":        `{"connections":[{}`,
			"duplicate member": `{"connections":[],"connections":[]}`,
			"trailing data":    `{"connections":[{}]} {}`,
		} {
			t.Run(name, func(t *testing.T) {
				wantError(t, v.on(t).do(request{path: "/connections/batch", body: body}), http.StatusBadRequest, "invalid_json")
			})
		}
	})
}

// TestImportBatchScope checks that the batch needs what POST /connections needs.
func TestImportBatchScope(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newBatchEnv(t, b)
		body := batchBody(batchItems[1:2])
		for _, c := range []struct {
			name   string
			auth   *string
			status int
		}{
			{"no key", strPtr(""), http.StatusUnauthorized},
			{"unknown key", strPtr("Bearer nope-nope-nope"), http.StatusUnauthorized},
			{"read only", strPtr("Bearer " + v.apiKey("dev", "environment:connections:read", "environment:connections:read_credentials")), http.StatusForbidden},
			{"update only", strPtr("Bearer " + v.apiKey("dev", "environment:connections:update")), http.StatusForbidden},
			{"create", strPtr("Bearer " + v.apiKey("dev", "environment:connections:create")), http.StatusOK},
			{"connections wildcard", strPtr("Bearer " + v.apiKey("dev", "environment:connections:*")), http.StatusOK},
		} {
			t.Run(c.name, func(t *testing.T) {
				res := v.on(t).do(request{path: "/connections/batch", body: body, auth: c.auth})
				if res.status != c.status {
					t.Fatalf("status %d, want %d: %s", res.status, c.status, res.body)
				}
			})
		}
		// Items are looked up in the key's environment only.
		other := v.apiKey("prod", "environment:*")
		results := batchResults(t, v.do(request{path: "/connections/batch", body: body, auth: strPtr("Bearer " + other)}), 1)
		if results[0].Status != http.StatusNotFound {
			t.Errorf("another environment's integration: %d %s", results[0].Status, results[0].Error)
		}
	})
}

// TestConnectionNamedBatch checks that GET, PATCH and DELETE on /connections/batch still reach
// the connection whose id is batch.
func TestConnectionNamedBatch(t *testing.T) {
	t.Parallel()
	v := newEnv(t, storetest.SQLite)
	v.integration("dev", "github", "OAUTH2")
	v.importOK(`{"provider_config_key":"github","connection_id":"batch","credentials":{"type":"OAUTH2","access_token":"named-batch-1234"}}`)
	res := v.getConn("batch", "provider_config_key=github")
	if res.status != http.StatusOK || decodeObject(t, res.body)["connection_id"] != "batch" {
		t.Fatalf("get: %d %s", res.status, res.body)
	}
	res = v.do(request{method: http.MethodPatch, path: "/connections/batch?provider_config_key=github", body: `{"end_user":{"id":"u-batch"}}`})
	if res.status != http.StatusOK {
		t.Fatalf("patch: %d %s", res.status, res.body)
	}
	res = v.do(request{method: http.MethodDelete, path: "/connections/batch?provider_config_key=github"})
	if res.status != http.StatusOK {
		t.Fatalf("delete: %d %s", res.status, res.body)
	}
	if got := v.listIDs("connectionId=batch"); len(got) != 0 {
		t.Errorf("after delete, list: %q", got)
	}
}

// importMetrics are the credport_imports_total lines of GET /metrics.
func importMetrics(v *env) string {
	res := v.do(request{method: http.MethodGet, path: "/metrics", auth: strPtr(""), contentType: strPtr("")})
	var out []string
	for _, line := range strings.Split(string(res.body), "\n") {
		if strings.HasPrefix(line, "credport_imports_total{") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// slowItemStore delays the upserts of some connection ids: "slow" by 100 ms, "stuck" until the
// caller's deadline.
type slowItemStore struct{ *store.DB }

func (s slowItemStore) UpsertConnection(ctx context.Context, in store.UpsertConnection) (store.Connection, error) {
	switch in.ConnectionID {
	case "slow":
		t := time.NewTimer(100 * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return store.Connection{}, ctx.Err()
		}
	case "stuck":
		<-ctx.Done()
		return store.Connection{}, ctx.Err()
	}
	return s.DB.UpsertConnection(ctx, in)
}

// TestImportBatchItemDeadlines checks that each item has the database deadline of one request,
// not a share of one: five items applied one after the other take longer than the deadline and
// all succeed, while an item that outlives its own deadline answers 503 alone.
func TestImportBatchItemDeadlines(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		db := storetest.Open(t, b)
		v := newEnvWith(t, db, server.Config{Store: slowItemStore{db}, RequestTimeout: 300 * time.Millisecond})
		v.integration("dev", "stripe", "API_KEY")
		item := func(id string) string {
			return `{"provider_config_key":"stripe","connection_id":"` + id + `","credentials":{"type":"API_KEY","apiKey":"k"}}`
		}
		items := []string{item("slow"), item("stuck"), item("slow"), item("slow"), item("fine"), item("slow"), item("slow")}
		start := time.Now()
		results := batchResults(t, v.do(request{path: "/connections/batch", body: batchBody(items)}), len(items))
		if took := time.Since(start); took < 500*time.Millisecond {
			t.Fatalf("the batch took %v, less than its five chained items", took)
		}
		for i, r := range results {
			want := http.StatusOK
			if i == 1 {
				want = http.StatusServiceUnavailable
			}
			if r.Status != want {
				t.Errorf("item %d: %d %s, want %d", i, r.Status, r.Error, want)
			}
		}
		if !bytes.Contains(results[1].Error, []byte(`"database_unavailable"`)) {
			t.Errorf("stuck item: %s", results[1].Error)
		}
		wantError(t, v.do(request{body: item("stuck")}), http.StatusServiceUnavailable, "database_unavailable")
	})
}
