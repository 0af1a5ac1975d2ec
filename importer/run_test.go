package importer_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/credport/credport/gen"
	"github.com/credport/credport/importer"
	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// api is the real API on a fresh store, with integrations api_key (API_KEY) and basic (BASIC)
// and a key of environment dev. hook, when set, sees each request first and may answer it.
type api struct {
	url, key string
	dir      string
	requests atomic.Int64
	hook     func(w http.ResponseWriter, r *http.Request) bool
}

func newAPI(t *testing.T, b storetest.Backend) *api {
	t.Helper()
	db := storetest.Open(t, b)
	ctx := context.Background()
	_, key, err := db.CreateAPIKey(ctx, "dev", "import", []string{server.FullAccess})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"API_KEY", "BASIC"} {
		in := store.NewIntegration{Environment: "dev", UniqueKey: strings.ToLower(mode), Provider: "p", AuthMode: mode}
		if _, err := db.CreateIntegration(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	e, err := server.New(server.Config{Store: db})
	if err != nil {
		t.Fatal(err)
	}
	a := &api{key: key, dir: t.TempDir()}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.requests.Add(1)
		if a.hook != nil && a.hook(w, r) {
			return
		}
		e.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	a.url = s.URL
	return a
}

// validator is the server's request validator, as the importer takes it.
type validator struct{ v *server.BodyValidator }

func (v validator) Validate(body []byte) (any, *gen.ErrorObject) {
	value, err := v.v.Validate(body)
	if err == nil {
		return value, nil
	}
	obj := gen.ErrorObject{Code: err.Code, Message: &err.Message}
	if len(err.Details) > 0 {
		obj.Errors = &err.Details
	}
	return value, &obj
}

// options are a run's options against a: batches of 3 unless the test says.
func (a *api) options(t *testing.T, files ...string) importer.Options {
	t.Helper()
	v, err := server.NewImportValidator()
	if err != nil {
		t.Fatal(err)
	}
	return importer.Options{
		Files: files, URL: a.url, Key: a.key, Concurrency: 2, BatchSize: 3, MaxRetries: 2,
		Validator: validator{v}, Report: filepath.Join(a.dir, "report.jsonl"), State: filepath.Join(a.dir, "state"),
	}
}

func (a *api) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(a.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (a *api) report(t *testing.T) []importer.ReportLine {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(a.dir, "report.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []importer.ReportLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var l importer.ReportLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("report line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func apiKeyLines(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"provider_config_key":"api_key","connection_id":"%s-%d","credentials":{"type":"API_KEY","apiKey":"k-%d"}}`+"\n", prefix, i, i)
	}
	return b.String()
}

const badJSONL = `{"provider_config_key":"api_key","connection_id":"ok-1","credentials":{"type":"API_KEY","apiKey":"k"}}
{"provider_config_key":"api_key", "connection_id":"bad-1", broken}

{"provider_config_key":"missing","connection_id":"bad-2","credentials":{"type":"API_KEY","apiKey":"k"}}
{"provider_config_key":"basic","connection_id":"bad-3","credentials":{"type":"BASIC","username":"u","password":"p","extra":1}}
`

const badCSV = "provider_config_key,connection_id,type,apiKey\n\napi_key,c-ok,API_KEY,k\nmissing,c-bad,API_KEY,k\n"

// TestRunReports checks what Run does with good and bad records: it imports the good ones,
// reports each bad one by its input and record number with the error the server answers, and
// validates without sending in a dry run.
func TestRunReports(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		a := newAPI(t, b)
		jsonl := a.write(t, "bad.jsonl", []byte(badJSONL))
		csv := a.write(t, "bad.csv", []byte(badCSV))

		dry := a.options(t, jsonl, csv)
		dry.DryRun = true
		sum, err := importer.Run(context.Background(), dry)
		if !errors.Is(err, importer.ErrFailed) || sum.Valid != 4 || sum.Failed != 2 || a.requests.Load() != 0 {
			t.Fatalf("dry run: %+v, %v, %d requests", sum, err, a.requests.Load())
		}

		sum, err = importer.Run(context.Background(), a.options(t, jsonl, csv))
		if !errors.Is(err, importer.ErrFailed) || sum.Created != 2 || sum.Failed != 4 {
			t.Fatalf("Run: %+v, %v", sum, err)
		}
		got := map[string]string{}
		for _, l := range a.report(t) {
			got[fmt.Sprintf("%s:%d", filepath.Base(l.File), l.Line)] = fmt.Sprint(l.Status, " ", l.Error.Code)
		}
		want := map[string]string{
			"bad.jsonl:2": "0 invalid_json",
			"bad.jsonl:3": "404 not_found",
			"bad.jsonl:4": "0 invalid_body",
			"bad.csv:2":   "404 not_found",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("report\n got %v\nwant %v", got, want)
		}
		if sum, err := importer.Run(context.Background(), a.options(t, jsonl, csv)); !errors.Is(err, importer.ErrFailed) || sum.Updated != 2 {
			t.Errorf("again: %+v, %v", sum, err)
		}
	})
}
