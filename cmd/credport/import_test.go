package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bulk "github.com/credport/credport/importer"
	"github.com/credport/credport/store/storetest"
)

// importEnv is a running server with one integration per auth mode (unique key = the mode in
// lower case) and a key of environment dev.
type importEnv struct {
	c   *cli
	s   *serveProc
	key string
	url string
	dir string
	// mode are the flags that choose how records are sent; see importModes.
	mode []string
	// env are environment variables of the runs, over the CLI's.
	env map[string]string
}

// importModes are the ways `credport import` sends records: in batches to POST
// /connections/batch (several batches in each test), and one POST /connections per record.
var importModes = []struct {
	name string
	args []string
}{
	{"batch", []string{"--batch-size", "3", "--concurrency", "1"}},
	{"single", []string{"--batch-size", "1"}},
}

// inEveryMode runs test once per import mode, each on a server of its own.
func inEveryMode(t *testing.T, test func(t *testing.T, e *importEnv)) {
	for _, m := range importModes {
		t.Run(m.name, func(t *testing.T) {
			e := newImportEnv(t)
			e.mode = m.args
			test(t, e)
		})
	}
}

func newImportEnv(t *testing.T) *importEnv {
	t.Helper()
	c := newCLI(t, storetest.SQLite)
	key := strings.TrimSpace(c.must("keys", "create", "--env", "dev", "--name", "import"))
	for _, mode := range []string{"OAUTH2", "OAUTH1", "OAUTH2_CC", "API_KEY", "BASIC", "TBA", "NONE"} {
		c.must("integrations", "create", "--env", "dev", "--unique-key", strings.ToLower(mode), "--provider", "p", "--auth-mode", mode)
	}
	s := startServe(t, c)
	waitReady(t, &http.Client{Timeout: time.Second}, s.addr, s.done, s.stderr)
	return &importEnv{c: c, s: s, key: key, url: "http://" + s.addr, dir: t.TempDir()}
}

// importRun is the outcome of one `credport import`.
type importRun struct {
	stdout, stderr string
	code           int
	err            error
}

// run runs `credport import` with the key in CREDPORT_API_KEY, the state and report in the
// test's directory unless args name others, and stdin as standard input.
func (e *importEnv) run(ctx context.Context, stdin io.Reader, args ...string) importRun {
	var out, errOut bytes.Buffer
	getenv := e.c.getenv()
	env := func(name string) string {
		if v, ok := e.env[name]; ok {
			return v
		}
		if name == "CREDPORT_API_KEY" {
			return e.key
		}
		return getenv(name)
	}
	cmd := newRootCommand(env, &out, &errOut)
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	cmd.SetIn(stdin)
	full := append([]string{"import", "--state", e.path("state"), "--report", e.path("report.jsonl")}, e.mode...)
	full = append(full, args...)
	cmd.SetArgs(full)
	if ctx == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
	}
	err := cmd.ExecuteContext(ctx)
	return importRun{stdout: out.String(), stderr: errOut.String(), code: exitCode(err), err: err}
}

func (e *importEnv) path(name string) string { return filepath.Join(e.dir, name) }

func (e *importEnv) write(t *testing.T, name, content string) string {
	t.Helper()
	p := e.path(name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// report reads the report file.
func (e *importEnv) report(t *testing.T) []bulk.ReportLine {
	t.Helper()
	data, err := os.ReadFile(e.path("report.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []bulk.ReportLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var l bulk.ReportLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("report line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// connections is connection_id per provider_config_key, as stored.
func (e *importEnv) connections(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, row := range e.c.query(`SELECT provider_config_key || ' ' || connection_id FROM connections`) {
		k, id, _ := strings.Cut(row, " ")
		out[k] = append(out[k], id)
	}
	return out
}

func (r importRun) want(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d (%v), want %d\nstdout:\n%s\nstderr:\n%s", r.code, r.err, code, r.stdout, r.stderr)
	}
}

const mixedJSONL = `{"provider_config_key":"oauth2","connection_id":"j-oauth2","credentials":{"type":"OAUTH2","access_token":"at-1","refresh_token":"rt-1","expires_at":"2030-01-02T03:04:05Z"},"metadata":{"n":{"deep":1}},"tags":{"team":"core"},"end_user":{"id":"u1","email":"u1@example.com"}}
{"provider_config_key":"oauth1","connection_id":"j-oauth1","credentials":{"type":"OAUTH1","oauth_token":"ot","oauth_token_secret":"ots"}}

{"provider_config_key":"oauth2_cc","connection_id":"j-cc","credentials":{"type":"OAUTH2_CC","token":"tok","client_id":"cid","client_secret":"cs"}}
{"provider_config_key":"api_key","connection_id":"j-key","credentials":{"type":"API_KEY","apiKey":"k-1"}}
{"provider_config_key":"basic","connection_id":"j-basic","credentials":{"type":"BASIC","username":"u","password":""}}
{"provider_config_key":"tba","connection_id":"j-tba","credentials":{"type":"TBA","token_id":"ti","token_secret":"ts"},"connection_config":{"accountId":"123"}}
{"provider_config_key":"none","credentials":{"type":"NONE"}}
`

const mixedCSV = `provider_config_key,connection_id,type,access_token,refresh_token,expires_at,oauth_token,oauth_token_secret,token,client_id,client_secret,apiKey,username,password,token_id,token_secret,connection_config.accountId,metadata,metadata.source,tags.team,end_user.id,end_user.email
oauth2,c-oauth2,OAUTH2,at-1,rt-1,2030-01-02T03:04:05Z,,,,,,,,,,,,"{""n"":{""deep"":1}}",csv,core,u1,u1@example.com
oauth1,c-oauth1,OAUTH1,,,,ot,ots,,,,,,,,,,,,,,
oauth2_cc,c-cc,OAUTH2_CC,,,,,,tok,cid,cs,,,,,,,,,,,
api_key,c-key,API_KEY,,,,,,,,,k-1,,,,,,,,,,
basic,c-basic,BASIC,,,,,,,,,,u,,,,,,,,,
tba,c-tba,TBA,,,,,,,,,,,,ti,ts,123,,,,,
none,,NONE,,,,,,,,,,,,,,,,,,,
`

func TestImportEveryCredentialType(t *testing.T) {
	e := newImportEnv(t)
	jsonl := e.write(t, "mixed.jsonl", mixedJSONL)
	csvFile := e.write(t, "mixed.csv", mixedCSV)

	r := e.run(nil, nil, "--url", e.url, jsonl, csvFile)
	r.want(t, 0)
	if !strings.Contains(r.stdout, "created 14, updated 0, failed 0") {
		t.Errorf("summary %q, want 14 created", r.stdout)
	}
	got := e.connections(t)
	for _, k := range []string{"oauth2", "oauth1", "oauth2_cc", "api_key", "basic", "tba", "none"} {
		if len(got[k]) != 2 {
			t.Errorf("%s: connections %v, want one from each file", k, got[k])
		}
	}
	if !slices.Contains(got["basic"], "c-basic") || !slices.Contains(got["tba"], "j-tba") {
		t.Errorf("connection ids %v", got)
	}
	tags := e.c.query(`SELECT tags FROM connections WHERE connection_id = 'c-oauth2'`)
	if len(tags) != 1 || !strings.Contains(tags[0], "core") || !strings.Contains(tags[0], "u1@example.com") {
		t.Errorf("tags of the CSV OAUTH2 row: %v", tags)
	}
	meta := e.c.query(`SELECT metadata FROM connections WHERE connection_id = 'c-oauth2'`)
	if len(meta) != 1 || !strings.Contains(meta[0], `"deep"`) || !strings.Contains(meta[0], `"csv"`) {
		t.Errorf("metadata of the CSV OAUTH2 row: %v", meta)
	}

	// The same files again update what has an id; NONE rows without one are new connections.
	r = e.run(nil, nil, "--url", e.url, jsonl, csvFile)
	r.want(t, 0)
	if !strings.Contains(r.stdout, "created 2, updated 12, failed 0") {
		t.Errorf("second summary %q", r.stdout)
	}
}

const badJSONL = `{"provider_config_key":"api_key","connection_id":"ok-1","credentials":{"type":"API_KEY","apiKey":"k"}}
{"provider_config_key":"api_key", broken
{"provider_config_key":"oauth2","connection_id":"bad-2","credentials":{"type":"OAUTH2"}}
{"provider_config_key":"missing","connection_id":"bad-3","credentials":{"type":"API_KEY","apiKey":"k"}}

{"provider_config_key":"oauth2","connection_id":"bad-4","credentials":{"type":"API_KEY","apiKey":"k"}}
{"provider_config_key":"basic","connection_id":"bad-5","credentials":{"type":"BASIC","username":"u","password":"p","extra":1}}
{"provider_config_key":"api_key","connection_id":"ok-2","credentials":{"type":"API_KEY","apiKey":"k"}}
`

func TestImportBadLinesAndDryRun(t *testing.T) {
	inEveryMode(t, func(t *testing.T, e *importEnv) {
		file := e.write(t, "bad.jsonl", badJSONL)

		t.Run("dry run", func(t *testing.T) {
			r := e.run(nil, nil, "--dry-run", file)
			r.want(t, 1)
			for _, want := range []string{
				file + ":2: invalid_json",
				file + ":3: invalid_body: Invalid request body; credentials.access_token:",
				file + ":7: invalid_body: Invalid request body; credentials: property \"extra\" is unsupported",
				"report: " + e.path("report.jsonl"),
			} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
			if !strings.Contains(r.stdout, "valid 4, invalid 3") {
				t.Errorf("summary %q", r.stdout)
			}
			if n := len(e.connections(t)); n != 0 {
				t.Errorf("a dry run stored %d connections", n)
			}
			lines := e.report(t)
			if len(lines) != 3 || lines[0].Line != 2 || lines[1].Line != 3 || lines[2].Line != 7 {
				t.Fatalf("dry-run report %+v", lines)
			}
		})

		r := e.run(nil, nil, "--url", e.url, file)
		r.want(t, 1)
		if !strings.Contains(r.stdout, "created 2, updated 0, failed 5") {
			t.Errorf("summary %q", r.stdout)
		}
		lines := e.report(t)
		type row struct {
			line   int
			status int
			code   string
			path   string
		}
		var got []row
		for _, l := range lines {
			p := ""
			if l.Error.Errors != nil && len(*l.Error.Errors) > 0 {
				p = strings.Join((*l.Error.Errors)[0].Path, ".")
			}
			if l.File != file {
				t.Errorf("report file %q, want %q", l.File, file)
			}
			got = append(got, row{l.Line, l.Status, string(l.Error.Code), p})
		}
		slices.SortFunc(got, func(a, b row) int { return a.line - b.line })
		want := []row{
			{2, 0, "invalid_json", ""},
			{3, 0, "invalid_body", "credentials.access_token"},
			{4, 404, "not_found", ""},
			{6, 400, "invalid_body", "credentials.type"}, // physical lines: line 5 is blank
			{7, 0, "invalid_body", "credentials"},
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("report\n got %v\nwant %v", got, want)
		}
		// What was refused offline is exactly what the server answers for the same bodies.
		im := newImporter(e.s.addr, e.key)
		bodies := strings.Split(badJSONL, "\n") // by physical line
		for _, l := range lines {
			if l.Status != 0 {
				continue
			}
			o := im.send(context.Background(), "offline", "", strings.NewReader(bodies[l.Line-1]))
			var answer struct {
				Error json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal([]byte(o.body), &answer); err != nil || o.status != 400 {
				t.Fatalf("line %d sent to the server: %d %s", l.Line, o.status, o.body)
			}
			reported, _ := json.Marshal(l.Error)
			if !jsonEqual(t, answer.Error, reported) {
				t.Errorf("line %d: report %s, server %s", l.Line, reported, answer.Error)
			}
		}
		if ids := e.connections(t)["api_key"]; len(ids) != 2 {
			t.Errorf("imported %v, want ok-1 and ok-2", ids)
		}
	})
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}

// faultProxy stands in front of the server and fails requests as its rules say. It counts the
// requests per connection_id and records when they came; an item of a batch counts as one
// request of its connection id.
type faultProxy struct {
	*httptest.Server
	mu    sync.Mutex
	seen  map[string][]time.Time
	total int
	// fault decides what to do with the nth request (1-based) of a connection id: "" forwards.
	fault func(id string, nth, total int) string
	// noBatch, when set, is the status POST /connections/batch answers, as from a server
	// without the batch endpoint; batches counts those requests.
	noBatch int
	// batches and singles count the requests to POST /connections/batch and POST /connections.
	batches, singles int
	// maxItems, when set, makes a batch of more items answer 413, as a smaller body limit would.
	maxItems int
}

func newFaultProxy(t *testing.T, target string, fault func(id string, nth, total int) string) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{seen: map[string][]time.Time{}, fault: fault}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(data))
		if r.URL.Path == "/connections/batch" {
			p.serveBatch(t, w, r, data, rp)
			return
		}
		var body struct {
			ConnectionID string `json:"connection_id"`
		}
		_ = json.Unmarshal(data, &body)
		p.mu.Lock()
		p.singles++
		p.seen[body.ConnectionID] = append(p.seen[body.ConnectionID], time.Now())
		p.total++
		nth, total := len(p.seen[body.ConnectionID]), p.total
		p.mu.Unlock()
		switch p.fault(body.ConnectionID, nth, total) {
		case "503":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{"code":"service_unavailable","message":"try later"}}`)
		case "429":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"error":{"code":"too_many_requests","message":"slow down"}}`)
		case "lose":
			// The server handles it, then the answer is lost on the way back.
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK {
				t.Errorf("request behind the lost answer: %d %s", rec.Code, rec.Body)
			}
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

// serveBatch applies the rules to each item of a batch: a 503 is that item's result and the item
// is not forwarded; a 429 answers the whole request; a lost answer loses the whole answer.
func (p *faultProxy) serveBatch(t *testing.T, w http.ResponseWriter, r *http.Request, data []byte, rp *httputil.ReverseProxy) {
	var envelope struct {
		Connections []json.RawMessage `json:"connections"`
	}
	if err := json.Unmarshal(data, &envelope); err != nil {
		t.Errorf("batch body: %v", err)
	}
	p.mu.Lock()
	p.batches++
	if p.noBatch != 0 {
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(p.noBatch)
		_, _ = io.WriteString(w, `{"error":{"code":"not_found","message":"No such route"}}`)
		return
	}
	if p.maxItems > 0 && len(envelope.Connections) > p.maxItems {
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_, _ = io.WriteString(w, `{"error":{"code":"payload_too_large","message":"Request body is too large"}}`)
		return
	}
	actions := make([]string, len(envelope.Connections))
	for i, item := range envelope.Connections {
		var body struct {
			ConnectionID string `json:"connection_id"`
		}
		_ = json.Unmarshal(item, &body)
		p.seen[body.ConnectionID] = append(p.seen[body.ConnectionID], time.Now())
		p.total++
		actions[i] = p.fault(body.ConnectionID, len(p.seen[body.ConnectionID]), p.total)
	}
	p.mu.Unlock()
	if slices.Contains(actions, "429") {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":{"code":"too_many_requests","message":"slow down"}}`)
		return
	}
	var forward []json.RawMessage
	for i, item := range envelope.Connections {
		if actions[i] != "503" {
			forward = append(forward, item)
		}
	}
	var answered struct {
		Results []json.RawMessage `json:"results"`
	}
	if len(forward) > 0 {
		fwd, _ := json.Marshal(map[string]any{"connections": forward})
		r.Body = io.NopCloser(bytes.NewReader(fwd))
		r.ContentLength = int64(len(fwd))
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &answered) != nil {
			t.Errorf("forwarded batch: %d %s", rec.Code, rec.Body)
			return
		}
	}
	if slices.Contains(actions, "lose") {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return
	}
	results := make([]json.RawMessage, len(actions))
	for i, a := range actions {
		if a == "503" {
			results[i] = json.RawMessage(`{"status":503,"error":{"code":"service_unavailable","message":"try later"}}`)
			continue
		}
		results[i], answered.Results = answered.Results[0], answered.Results[1:]
	}
	out, _ := json.Marshal(map[string]any{"results": results})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// checkMode checks that the records went the way e's mode sends them.
func (p *faultProxy) checkMode(t *testing.T, e *importEnv) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	batched := slices.Contains(e.mode, "3")
	if batched && (p.singles != 0 || p.batches == 0) || !batched && p.batches != 0 {
		t.Errorf("mode %v: %d batch requests, %d single ones", e.mode, p.batches, p.singles)
	}
}

func (p *faultProxy) requests(id string) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen[id])
}

func apiKeyLines(prefix string, n int, withID func(i int) bool) string {
	var b strings.Builder
	for i := range n {
		if withID(i) {
			fmt.Fprintf(&b, `{"provider_config_key":"api_key","connection_id":"%s-%d","credentials":{"type":"API_KEY","apiKey":"k-%d"}}`+"\n", prefix, i, i)
		} else {
			fmt.Fprintf(&b, `{"provider_config_key":"api_key","credentials":{"type":"API_KEY","apiKey":"k-%d"},"metadata":{"i":%d}}`+"\n", i, i)
		}
	}
	return b.String()
}

func TestImportRetries(t *testing.T) {
	inEveryMode(t, func(t *testing.T, e *importEnv) {
		var lostID string
		var lostMu sync.Mutex
		proxy := newFaultProxy(t, e.url, func(id string, nth, _ int) string {
			switch {
			case id == "r-1" && nth <= 2, id == "r-2" && nth == 1:
				return "503"
			case id == "r-3" && nth == 1:
				return "429"
			case id == "r-4" && nth <= 10:
				return "503" // more than --max-retries allows
			case !strings.HasPrefix(id, "r-") && nth == 1:
				lostMu.Lock()
				defer lostMu.Unlock()
				if lostID == "" {
					lostID = id
					return "lose"
				}
			}
			return ""
		})
		file := e.write(t, "retry.jsonl", apiKeyLines("r", 8, func(i int) bool { return i != 6 }))
		r := e.run(nil, nil, "--url", proxy.URL, "--max-retries", "3", file)
		r.want(t, 1)

		if n := len(proxy.requests("r-1")); n != 3 {
			t.Errorf("r-1 (two 503s): %d requests, want 3", n)
		}
		if n := len(proxy.requests("r-0")); n != 1 {
			t.Errorf("r-0 (beside r-1 and r-2, which got 503s): %d requests, want 1", n)
		}
		if n := len(proxy.requests("r-2")); n != 2 {
			t.Errorf("r-2 (one 503): %d requests, want 2", n)
		}
		if at := proxy.requests("r-3"); len(at) != 2 || at[1].Sub(at[0]) < time.Second {
			t.Errorf("r-3 (429, Retry-After: 1): requests at %v, want two, a second apart", at)
		}
		if n := len(proxy.requests("r-4")); n != 4 {
			t.Errorf("r-4 (always 503): %d requests, want 1 + 3 retries", n)
		}
		if lostID == "" || len(proxy.requests(lostID)) != 2 {
			t.Fatalf("the record without an id: %q sent %d times, want twice under one id", lostID, len(proxy.requests(lostID)))
		}
		ids := e.connections(t)["api_key"]
		if len(ids) != 7 || !slices.Contains(ids, lostID) {
			t.Errorf("stored %v: want 7 connections (r-4 failed), one of them %s, no duplicate", ids, lostID)
		}
		lines := e.report(t)
		if len(lines) != 1 || lines[0].Line != 5 || lines[0].Status != 503 || *lines[0].ConnectionID != "r-4" {
			t.Errorf("report %+v, want r-4 (line 5) with 503", lines)
		}
		proxy.checkMode(t, e)
	})
}

func TestImportInterruptAndResume(t *testing.T) {
	inEveryMode(t, func(t *testing.T, e *importEnv) {
		const n = 300
		file := e.write(t, "big.jsonl", apiKeyLines("i", n, func(i int) bool { return i%2 == 0 }))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		proxy := newFaultProxy(t, e.url, func(_ string, _, total int) string {
			if total == n/2 {
				cancel()
			}
			time.Sleep(2 * time.Millisecond)
			return ""
		})
		r := e.run(ctx, nil, "--url", proxy.URL, file)
		r.want(t, exitInterrupted)
		first := len(e.connections(t)["api_key"])
		if first < n/2 || first >= n {
			t.Fatalf("after the interruption %d connections, want at least %d and fewer than %d", first, n/2, n)
		}

		r = e.run(nil, nil, "--url", proxy.URL, "--resume", file)
		r.want(t, 0)
		if !strings.Contains(r.stdout, fmt.Sprintf("skipped %d", first)) {
			t.Errorf("resume summary %q, want %d skipped", r.stdout, first)
		}
		ids := e.connections(t)["api_key"]
		if len(ids) != n {
			t.Fatalf("after resuming %d connections, want %d", len(ids), n)
		}
		proxy.mu.Lock()
		total := proxy.total
		for id, at := range proxy.seen {
			if len(at) != 1 {
				t.Errorf("connection %s sent %d times", id, len(at))
			}
		}
		proxy.mu.Unlock()
		if total != n {
			t.Errorf("%d requests in all, want %d", total, n)
		}
		proxy.checkMode(t, e)

		r = e.run(nil, nil, "--url", proxy.URL, "--resume", file)
		r.want(t, 0)
		proxy.mu.Lock()
		if proxy.total != n {
			t.Errorf("resuming a finished file sent %d requests", proxy.total-n)
		}
		proxy.mu.Unlock()
	})
}

func TestImportStdin(t *testing.T) {
	e := newImportEnv(t)
	r := e.run(nil, strings.NewReader("\n  "+apiKeyLines("s", 3, func(int) bool { return true })), "--url", e.url, "-")
	r.want(t, 0)
	r = e.run(nil, strings.NewReader("provider_config_key,connection_id,type,apiKey\napi_key,s-csv,API_KEY,k\n"), "--url", e.url, "-")
	r.want(t, 0)
	ids := e.connections(t)["api_key"]
	slices.Sort(ids)
	if fmt.Sprint(ids) != "[s-0 s-1 s-2 s-csv]" {
		t.Errorf("imported from stdin: %v", ids)
	}
}

func TestImportUsageErrors(t *testing.T) {
	e := &importEnv{c: newCLI(t, storetest.SQLite), key: "k", url: "http://127.0.0.1:1", dir: t.TempDir()}
	good := e.write(t, "good.jsonl", apiKeyLines("u", 1, func(int) bool { return true }))
	garbage := e.write(t, "garbage.txt", "hello, world\nnot a header\n")
	for name, args := range map[string][]string{
		"no file":              {"--url", e.url},
		"missing file":         {"--url", e.url, e.path("nope.jsonl")},
		"malformed flag":       {"--url", e.url, "--concurrency", "many", good},
		"zero workers":         {"--url", e.url, "--concurrency", "0", good},
		"batch of 0":           {"--url", e.url, "--batch-size", "0", good},
		"batch over 1000":      {"--url", e.url, "--batch-size", "1001", good},
		"unknown format":       {"--url", e.url, "--format", "xml", good},
		"negative unreachable": {"--url", e.url, "--max-unreachable", "-1s", good},
		"not http":             {"--url", "ftp://127.0.0.1", good},
		"neither format":       {"--url", e.url, garbage},
		"directory input":      {"--url", e.url, e.dir},
	} {
		t.Run(name, func(t *testing.T) {
			e.run(nil, nil, args...).want(t, exitUsage)
		})
	}
	t.Run("server unreachable", func(t *testing.T) {
		r := e.run(nil, nil, "--url", e.url, "--max-retries", "0", good)
		r.want(t, 1)
		if l := e.report(t); len(l) != 1 || l[0].Status != 0 {
			t.Errorf("report %+v", l)
		}
	})
}

func TestExitCode(t *testing.T) {
	for err, want := range map[error]int{
		nil:                                   0,
		io.EOF:                                1,
		usageError("x"):                       2,
		withExitCode(exitInterrupted, io.EOF): 130,
		fmt.Errorf("wrapped: %w", usageError("x")): 2,
	} {
		if got := exitCode(err); got != want {
			t.Errorf("exitCode(%v) = %d, want %d", err, got, want)
		}
	}
}

// TestImportFallsBackToSingle checks that against a server without the batch endpoint (404 or
// 405 on its path) every record is sent alone to POST /connections, once.
func TestImportFallsBackToSingle(t *testing.T) {
	for _, status := range []int{http.StatusNotFound, http.StatusMethodNotAllowed} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			e := newImportEnv(t)
			proxy := newFaultProxy(t, e.url, func(string, int, int) string { return "" })
			proxy.noBatch = status
			const n = 25
			file := e.write(t, "fallback.jsonl", apiKeyLines("f", n, func(i int) bool { return i%5 != 0 }))
			r := e.run(nil, nil, "--url", proxy.URL, "--batch-size", "4", "--concurrency", "2", file)
			r.want(t, 0)
			if !strings.Contains(r.stdout, fmt.Sprintf("created %d, updated 0, failed 0", n)) {
				t.Errorf("summary %q", r.stdout)
			}
			if ids := e.connections(t)["api_key"]; len(ids) != n {
				t.Errorf("%d stored, want %d", len(ids), n)
			}
			proxy.mu.Lock()
			defer proxy.mu.Unlock()
			if proxy.batches < 1 || proxy.batches > 2 || proxy.singles != n {
				t.Errorf("%d batch requests (want 1 per worker at most), %d single ones (want %d)", proxy.batches, proxy.singles, n)
			}
			for id, at := range proxy.seen {
				if len(at) != 1 {
					t.Errorf("connection %s sent alone %d times", id, len(at))
				}
			}
		})
	}
}

// TestImportSplitsOversizedBatches checks that a batch the server finds too large (413) is sent
// again in halves, each record once.
func TestImportSplitsOversizedBatches(t *testing.T) {
	e := newImportEnv(t)
	proxy := newFaultProxy(t, e.url, func(string, int, int) string { return "" })
	proxy.maxItems = 2
	const n = 11
	file := e.write(t, "split.jsonl", apiKeyLines("s", n, func(int) bool { return true }))
	r := e.run(nil, nil, "--url", proxy.URL, "--batch-size", "8", "--max-retries", "0", file)
	r.want(t, 0)
	if ids := e.connections(t)["api_key"]; len(ids) != n {
		t.Errorf("%d stored, want %d", len(ids), n)
	}
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	if proxy.singles != 0 || len(proxy.seen) != n {
		t.Errorf("%d single requests, %d connection ids sent", proxy.singles, len(proxy.seen))
	}
	for id, at := range proxy.seen {
		if len(at) != 1 {
			t.Errorf("connection %s sent %d times", id, len(at))
		}
	}
}
