package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/credport/credport/store/storetest"
)

// TestImportStopsOnRefusedKey checks that a wrong key stops the import at the first answer with
// one message and exit status 3, and that --resume with the right key finishes it.
func TestImportStopsOnRefusedKey(t *testing.T) {
	inEveryMode(t, func(t *testing.T, e *importEnv) {
		file := e.write(t, "keys.jsonl", apiKeyLines("k", 30, func(int) bool { return true }))
		r := e.run(nil, nil, "--url", e.url, "--concurrency", "1", "--key", "wrong", file)
		r.want(t, exitStopped)
		msg := r.stderr + r.err.Error()
		if n := strings.Count(msg, "refused the API key: 401"); n != 1 || !strings.Contains(msg, "--resume") {
			t.Errorf("want one message about the key and --resume:\n%s", msg)
		}
		if l := e.report(t); len(l) != 0 {
			t.Errorf("report of a refused key: %+v", l)
		}
		r = e.run(nil, nil, "--url", e.url, "--resume", file)
		r.want(t, 0)
		if ids := e.connections(t)["api_key"]; len(ids) != 30 {
			t.Errorf("after resuming: %d connections, want 30", len(ids))
		}
	})
}

// TestImportStopsWhenUnreachable checks that an import gives up once the server has not answered
// for --max-unreachable, with exit status 3, and that --resume finishes it once it answers.
func TestImportStopsWhenUnreachable(t *testing.T) {
	e := newImportEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	_ = l.Close()
	file := e.write(t, "down.jsonl", apiKeyLines("d", 20, func(int) bool { return true }))
	r := e.run(nil, nil, "--url", down, "--max-unreachable", "0s", "--max-retries", "100", file)
	r.want(t, exitStopped)
	if msg := r.stderr + r.err.Error(); !strings.Contains(msg, "has not answered for 0s") || !strings.Contains(msg, "--resume") {
		t.Errorf("messages:\n%s", msg)
	}
	r = e.run(nil, nil, "--url", e.url, "--resume", file)
	r.want(t, 0)
	if !strings.Contains(r.stdout, "created 20,") {
		t.Errorf("resumed: %s", r.stdout)
	}
}

// TestImportResumeRefusesStdin checks that --resume with standard input is a usage error.
func TestImportResumeRefusesStdin(t *testing.T) {
	e := newImportEnv(t)
	r := e.run(nil, strings.NewReader(apiKeyLines("s", 2, func(int) bool { return true })), "--url", e.url, "--resume", "-")
	r.want(t, exitUsage)
	if !strings.Contains(r.stderr+r.err.Error(), "--resume does not go with standard input") {
		t.Errorf("error %v", r.err)
	}
	if n := len(e.connections(t)); n != 0 {
		t.Errorf("%d connections imported", n)
	}
}

// TestImportReportIsAnInput checks that the report of a run, its records fixed, is an input of
// its own, and that it names each record by its physical line, CSV rows included.
func TestImportReportIsAnInput(t *testing.T) {
	inEveryMode(t, func(t *testing.T, e *importEnv) {
		jsonl := e.write(t, "bad.jsonl", badJSONL)
		csvFile := e.write(t, "bad.csv", "provider_config_key,connection_id,type,apiKey\n\napi_key,c-ok,API_KEY,k\nmissing,c-bad,API_KEY,k\n")
		r := e.run(nil, nil, "--url", e.url, jsonl, csvFile)
		r.want(t, 1)
		var where []string
		for _, l := range e.report(t) {
			where = append(where, fmt.Sprintf("%s:%d", l.File, l.Line))
		}
		slices.Sort(where)
		want := []string{csvFile + ":4", jsonl + ":2", jsonl + ":3", jsonl + ":4", jsonl + ":6", jsonl + ":7"}
		slices.Sort(want)
		if fmt.Sprint(where) != fmt.Sprint(want) {
			t.Errorf("report lines %v, want %v", where, want)
		}
		data, err := os.ReadFile(e.path("report.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		fixed := strings.NewReplacer(
			`"{\"provider_config_key\":\"api_key\", broken"`, `{"provider_config_key":"api_key","connection_id":"fix-1","credentials":{"type":"API_KEY","apiKey":"k"}}`,
			`{"type":"OAUTH2"}`, `{"type":"OAUTH2","access_token":"at"}`,
			`"missing"`, `"api_key"`,
			`"provider_config_key":"oauth2","connection_id":"bad-4"`, `"provider_config_key":"api_key","connection_id":"bad-4"`,
			`,"extra":1`, ``,
		).Replace(string(data))
		report := e.write(t, "fixed.jsonl", fixed)
		r = e.run(nil, nil, "--url", e.url, "--report", e.path("report2.jsonl"), report)
		r.want(t, 0)
		if !strings.Contains(r.stdout, "created 6, updated 0, failed 0") {
			t.Errorf("the fixed report: %s", r.stdout)
		}
	})
}

// TestImportShowsFirstFailures checks that a run, real or dry, prints the first 10 failures as
// file:line: code: message, how many more there are, and the report's path.
func TestImportShowsFirstFailures(t *testing.T) {
	e := newImportEnv(t)
	var b strings.Builder
	for i := range 13 {
		fmt.Fprintf(&b, `{"provider_config_key":"missing","connection_id":"m-%d","credentials":{"type":"API_KEY"}}`+"\n", i)
	}
	file := e.write(t, "fail.jsonl", b.String())
	shown := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(file) + `:\d+: invalid_body: `)
	for _, args := range [][]string{{"--url", e.url}, {"--dry-run"}} {
		t.Run(args[0], func(t *testing.T) {
			r := e.run(nil, nil, append(args, file)...)
			r.want(t, 1)
			if n := len(shown.FindAllString(r.stderr, -1)); n != 10 {
				t.Errorf("%d failures shown, want 10:\n%s", n, r.stderr)
			}
			for _, want := range []string{file + ":1: invalid_body", "... and 3 more", "report: " + e.path("report.jsonl")} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
		})
	}
}

// TestImportGzip checks that a gzip file is imported as what it holds.
func TestImportGzip(t *testing.T) {
	e := newImportEnv(t)
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write([]byte(apiKeyLines("z", 5, func(int) bool { return true })))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	file := e.write(t, "dump.jsonl.gz", b.String())
	r := e.run(nil, nil, "--url", e.url, file)
	r.want(t, 0)
	if ids := e.connections(t)["api_key"]; len(ids) != 5 {
		t.Errorf("imported %v", ids)
	}
}

// TestImportURL checks --url's default: CREDPORT_URL, else http://127.0.0.1:3003.
func TestImportURL(t *testing.T) {
	e := newImportEnv(t)
	file := e.write(t, "url.jsonl", apiKeyLines("u", 2, func(int) bool { return true }))
	e.env = map[string]string{"CREDPORT_URL": e.url}
	r := e.run(nil, nil, file)
	r.want(t, 0)
	if ids := e.connections(t)["api_key"]; len(ids) != 2 {
		t.Errorf("imported %v", ids)
	}
	e.env = nil
	r = e.run(nil, nil, "--dry-run", "--help")
	r.want(t, 0)
	if !strings.Contains(r.stdout, `(env CREDPORT_URL) (default "http://127.0.0.1:3003")`) {
		t.Errorf("help:\n%s", r.stdout)
	}
}

// TestImportHelpHidesDatabase checks that import's help leaves out --database, which it does not
// use, and that other commands still show it.
func TestImportHelpHidesDatabase(t *testing.T) {
	c := newCLI(t, storetest.SQLite)
	out := c.must("import", "--help")
	if strings.Contains(out, "--database") || !strings.Contains(out, "--max-unreachable") {
		t.Errorf("import --help:\n%s", out)
	}
	if out := c.must("migrate", "--help"); !strings.Contains(out, "--database") {
		t.Errorf("migrate --help lost --database:\n%s", out)
	}
}
