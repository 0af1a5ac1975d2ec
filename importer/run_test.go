package importer_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credport/credport/contract"
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
	_, key, err := db.CreateAPIKey(ctx, "dev", "import", []string{contract.FullAccess})
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

// options are a run's options against a: one record per request unless the test says.
func (a *api) options(t *testing.T, files ...string) importer.Options {
	t.Helper()
	v, err := contract.NewImportValidator()
	if err != nil {
		t.Fatal(err)
	}
	return importer.Options{
		Files: files, URL: a.url, Key: a.key, Concurrency: 2, BatchSize: 3, MaxRetries: 2,
		MaxUnreachable: importer.DefaultMaxUnreachable, Validator: v,
		Report: filepath.Join(a.dir, "report.jsonl"), State: filepath.Join(a.dir, "state"),
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

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const badJSONL = `{"provider_config_key":"api_key","connection_id":"ok-1","credentials":{"type":"API_KEY","apiKey":"k"}}
{"provider_config_key":"api_key", "connection_id":"bad-1", broken}

{"provider_config_key":"missing","connection_id":"bad-2","credentials":{"type":"API_KEY","apiKey":"k"}}
{"provider_config_key":"basic","connection_id":"bad-3","credentials":{"type":"BASIC","username":"u","password":"p","extra":1}}
`

const badCSV = "provider_config_key,connection_id,type,apiKey\n\napi_key,c-ok,API_KEY,k\nmissing,c-bad,API_KEY,k\n"

// TestRunReportIsAnInput checks that each report line names the record's physical line and holds
// the record, so that the report, once fixed, imports what failed.
func TestRunReportIsAnInput(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		a := newAPI(t, b)
		jsonl := a.write(t, "bad.jsonl", []byte(badJSONL))
		csv := a.write(t, "bad.csv", []byte(badCSV))
		var stderr bytes.Buffer
		o := a.options(t, jsonl, csv)
		o.Stderr = &stderr
		sum, err := importer.Run(context.Background(), o)
		if !errors.Is(err, importer.ErrFailed) || sum.Created != 2 || sum.Failed != 4 {
			t.Fatalf("Run: %+v, %v", sum, err)
		}
		got := map[string]string{}
		for _, l := range a.report(t) {
			got[fmt.Sprintf("%s:%d", filepath.Base(l.File), l.Line)] = string(l.Error.Code) + " " + string(l.Record)
		}
		want := map[string]string{
			"bad.jsonl:2": `invalid_json "{\"provider_config_key\":\"api_key\", \"connection_id\":\"bad-1\", broken}"`,
			"bad.jsonl:4": `not_found {"provider_config_key":"missing","connection_id":"bad-2","credentials":{"type":"API_KEY","apiKey":"k"}}`,
			"bad.jsonl:5": `invalid_body {"provider_config_key":"basic","connection_id":"bad-3","credentials":{"type":"BASIC","username":"u","password":"p","extra":1}}`,
			"bad.csv:4":   `not_found {"connection_id":"c-bad","credentials":{"apiKey":"k","type":"API_KEY"},"provider_config_key":"missing"}`,
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("report\n got %v\nwant %v", got, want)
		}
		for _, where := range []string{"bad.jsonl:2: invalid_json", "bad.csv:4: not_found", "report: " + o.Report} {
			if !strings.Contains(stderr.String(), where) {
				t.Errorf("stderr lacks %q:\n%s", where, stderr.String())
			}
		}

		// Fixed, the report imports the four records.
		data, err := os.ReadFile(o.Report)
		if err != nil {
			t.Fatal(err)
		}
		fixed := strings.NewReplacer(`\"bad-1\", broken}`, `\"bad-1\", \"credentials\":{\"type\":\"API_KEY\",\"apiKey\":\"k\"}}`,
			`"missing"`, `"api_key"`, `,"extra":1`, ``).Replace(string(data))
		again := a.options(t, a.write(t, "fixed.jsonl", []byte(fixed)))
		again.Report = filepath.Join(a.dir, "report2.jsonl")
		if sum, err := importer.Run(context.Background(), again); err != nil || sum.Created != 4 {
			t.Fatalf("the fixed report: %+v, %v", sum, err)
		}
	})
}

// TestRunStopsOnRefusedKey checks that a refused key stops the run at once, reporting nothing,
// and that the run resumes once the key is right.
func TestRunStopsOnRefusedKey(t *testing.T) {
	for _, size := range []int{1, 3} {
		t.Run(fmt.Sprint("batch size ", size), func(t *testing.T) {
			a := newAPI(t, storetest.SQLite)
			file := a.write(t, "keys.jsonl", []byte(apiKeyLines("k", 40)))
			o := a.options(t, file)
			o.Key, o.BatchSize, o.Concurrency = "wrong", size, 1
			sum, err := importer.Run(context.Background(), o)
			if !errors.Is(err, importer.ErrStopped) || !strings.Contains(err.Error(), "refused the API key: 401") {
				t.Fatalf("Run with a wrong key: %+v, %v", sum, err)
			}
			if n := a.requests.Load(); n > 2 {
				t.Errorf("%d requests with a refused key, want it to stop at the first", n)
			}
			if sum.Failed != 0 || len(a.report(t)) != 0 {
				t.Errorf("a refused key reported records: %+v", sum)
			}
			o.Key, o.Resume = a.key, true
			if sum, err := importer.Run(context.Background(), o); err != nil || sum.Created != 40 {
				t.Fatalf("resumed with the right key: %+v, %v", sum, err)
			}
		})
	}
}

// fakeClock advances by each wait, and by a second each time it is read.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Second)
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func (c *fakeClock) elapsed(since time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now.Sub(since)
}

// TestRunStopsWhenUnreachable checks that the run stops once the server has not answered for
// MaxUnreachable, not before, and that an answer of any status counts as reachable.
func TestRunStopsWhenUnreachable(t *testing.T) {
	a := newAPI(t, storetest.SQLite)
	file := a.write(t, "down.jsonl", []byte(apiKeyLines("d", 10)))

	t.Run("no answer", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		down := "http://" + l.Addr().String()
		_ = l.Close()
		start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		clock := &fakeClock{now: start}
		o := a.options(t, file)
		o.URL, o.MaxRetries, o.Concurrency, o.Clock = down, 1000, 1, clock
		sum, err := importer.Run(context.Background(), o)
		if !errors.Is(err, importer.ErrStopped) || !strings.Contains(err.Error(), "has not answered for 30s") {
			t.Fatalf("Run against a closed port: %+v, %v", sum, err)
		}
		if d := clock.elapsed(start); d < 30*time.Second || d > 45*time.Second {
			t.Errorf("stopped after %s of the clock, want soon after 30s", d)
		}
		if sum.Failed != 0 {
			t.Errorf("records reported as failed: %+v", sum)
		}
		o.URL, o.Resume, o.Clock = a.url, true, nil
		if sum, err := importer.Run(context.Background(), o); err != nil || sum.Created != 10 {
			t.Fatalf("resumed once the server is up: %+v, %v", sum, err)
		}
	})

	t.Run("answers that fail", func(t *testing.T) {
		a.hook = func(w http.ResponseWriter, _ *http.Request) bool {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"service_unavailable","message":"later"}}`))
			return true
		}
		defer func() { a.hook = nil }()
		o := a.options(t, file)
		o.MaxUnreachable, o.MaxRetries, o.Clock = 0, 2, &fakeClock{}
		sum, err := importer.Run(context.Background(), o)
		if !errors.Is(err, importer.ErrFailed) || sum.Failed != 10 {
			t.Fatalf("Run against a server answering 503: %+v, %v", sum, err)
		}
	})
}

// TestRunResumeRefusesStdin checks that --resume is refused with standard input.
func TestRunResumeRefusesStdin(t *testing.T) {
	a := newAPI(t, storetest.SQLite)
	o := a.options(t, "-")
	o.Stdin, o.Resume = strings.NewReader(apiKeyLines("s", 1)), true
	_, err := importer.Run(context.Background(), o)
	if !errors.Is(err, importer.ErrUsage) || !strings.Contains(err.Error(), "--resume does not go with standard input") {
		t.Fatalf("Run: %v", err)
	}
	if a.requests.Load() != 0 {
		t.Error("a refused run sent requests")
	}
}

// TestRunResumeChangedContent checks that a file whose content changed at the same size is
// imported from the start on --resume.
func TestRunResumeChangedContent(t *testing.T) {
	a := newAPI(t, storetest.SQLite)
	file := a.write(t, "same.jsonl", []byte(apiKeyLines("a", 5)))
	o := a.options(t, file)
	if _, err := importer.Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	a.write(t, "same.jsonl", []byte(apiKeyLines("b", 5)))
	var stderr bytes.Buffer
	o.Resume, o.Stderr = true, &stderr
	sum, err := importer.Run(context.Background(), o)
	if err != nil || sum.Created != 5 || sum.Skipped != 0 {
		t.Fatalf("resumed after the content changed: %+v, %v", sum, err)
	}
	if !strings.Contains(stderr.String(), "its content changed since the saved state") {
		t.Errorf("stderr: %s", stderr.String())
	}
	if sum, err := importer.Run(context.Background(), o); err != nil || sum.Skipped != 5 {
		t.Fatalf("resumed again: %+v, %v", sum, err)
	}
}

// TestRunGzip checks that gzip files are read as what they hold, whatever their name, and
// standard input too.
func TestRunGzip(t *testing.T) {
	a := newAPI(t, storetest.SQLite)
	jsonl := a.write(t, "dump.jsonl.gz", gzipped(t, apiKeyLines("g", 4)))
	csv := a.write(t, "rows.gz", gzipped(t, "provider_config_key,connection_id,type,apiKey\napi_key,g-csv,API_KEY,k\n"))
	sum, err := importer.Run(context.Background(), a.options(t, jsonl, csv))
	if err != nil || sum.Created != 5 {
		t.Fatalf("Run: %+v, %v", sum, err)
	}
	o := a.options(t, "-")
	o.Stdin = bytes.NewReader(gzipped(t, apiKeyLines("s", 2)))
	if sum, err := importer.Run(context.Background(), o); err != nil || sum.Created != 2 {
		t.Fatalf("Run on standard input: %+v, %v", sum, err)
	}
}

// TestRunInterruptedBar checks that a bar interrupted part way stays at the real count.
func TestRunInterruptedBar(t *testing.T) {
	a := newAPI(t, storetest.SQLite)
	file := a.write(t, "bar.jsonl", []byte(apiKeyLines("b", 20)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.hook = func(http.ResponseWriter, *http.Request) bool {
		if a.requests.Load() == 5 {
			cancel()
		}
		return false
	}
	var stderr bytes.Buffer
	o := a.options(t, file)
	o.BatchSize, o.Concurrency, o.Stderr, o.Terminal = 1, 1, &stderr, true
	sum, err := importer.Run(ctx, o)
	if !errors.Is(err, importer.ErrInterrupted) || sum.Created != 5 {
		t.Fatalf("Run: %+v, %v", sum, err)
	}
	out := stderr.String()
	if strings.Contains(out, "100%") || strings.Contains(out, "20/20") {
		t.Errorf("the bar was filled:\n%q", out)
	}
	if !strings.Contains(out, "import: 5/20 records") {
		t.Errorf("no line with the real count:\n%q", out)
	}
}

// TestRunReports checks what Run does with good and bad records: it imports the good ones,
// reports each bad one by its input and physical line with the error the server answers, and
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
			"bad.jsonl:4": "404 not_found",
			"bad.jsonl:5": "0 invalid_body",
			"bad.csv:4":   "404 not_found",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("report\n got %v\nwant %v", got, want)
		}
		if sum, err := importer.Run(context.Background(), a.options(t, jsonl, csv)); !errors.Is(err, importer.ErrFailed) || sum.Updated != 2 {
			t.Errorf("again: %+v, %v", sum, err)
		}
	})
}
