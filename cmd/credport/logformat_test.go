package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credport/credport/store/storetest"
)

// TestLogFormat: commands log as text on a terminal and as JSON otherwise, unless
// CREDPORT_LOG_FORMAT says; CREDPORT_LOG_LEVEL drops what is below it. serve's lines too.
func TestLogFormat(t *testing.T) {
	cases := []struct {
		name     string
		terminal bool
		format   string
		level    string
		want     string // "json", "text" or "none"
	}{
		{name: "piped", want: "json"},
		{name: "terminal", terminal: true, want: "text"},
		{name: "piped, text asked", format: "text", want: "text"},
		{name: "terminal, json asked", terminal: true, format: "json", want: "json"},
		{name: "level warn drops info", level: "warn", want: "none"},
		{name: "level debug keeps info", level: "debug", format: "text", want: "text"},
	}
	for _, command := range [][]string{{"migrate"}, {"serve", "--listen", "127.0.0.1:0", "--refresh-interval", "0"}} {
		for _, tc := range cases {
			t.Run(command[0]+"/"+tc.name, func(t *testing.T) {
				c := newCLI(t, storetest.Backends()[0])
				env := c.getenv()
				getenv := func(k string) string {
					switch k {
					case "CREDPORT_LOG_FORMAT":
						return tc.format
					case "CREDPORT_LOG_LEVEL":
						return tc.level
					}
					return env(k)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				// serve runs until its "serving" line is out; then it is stopped.
				ctx, stop := context.WithCancel(ctx)
				defer stop()
				if command[0] != "serve" {
					stop = func() {}
				} else if tc.want == "none" {
					t.Skip("serve logs nothing to wait for at level warn")
				}
				var buf syncBuffer
				sink := &notifyWriter{w: &buf, match: "serving", fn: stop}
				var stderr io.Writer = sink
				logged := buf.String
				if tc.terminal {
					pt, tty := openPTY(t)
					stderr = tty
					copied := make(chan struct{})
					go func() { _, _ = io.Copy(sink, pt); close(copied) }()
					logged = func() string {
						_ = tty.Close() // the reader sees the end once no one holds the terminal
						<-copied
						return buf.String()
					}
				}
				if err := run(ctx, command, getenv, io.Discard, stderr); err != nil {
					t.Fatalf("%s: %v", command[0], err)
				}
				out := logged()
				line := ""
				for _, l := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
					if strings.Contains(l, "migrations applied") {
						line = l
					}
				}
				switch tc.want {
				case "none":
					if line != "" {
						t.Errorf("at level %s, an info line was logged: %q", tc.level, line)
					}
				case "json":
					var rec map[string]any
					if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["msg"] != "migrations applied" {
						t.Errorf("want a JSON line, got %q (%v)\n%s", line, err, out)
					}
				case "text":
					if !strings.HasPrefix(line, "time=") || !strings.Contains(line, `msg="migrations applied"`) {
						t.Errorf("want a text line, got %q\n%s", line, out)
					}
				}
			})
		}
	}
}

// notifyWriter calls fn once the first time what is written contains match.
type notifyWriter struct {
	w     io.Writer
	match string
	fn    func()
	mu    sync.Mutex
	buf   bytes.Buffer
	done  bool
}

func (n *notifyWriter) Write(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.done {
		n.buf.Write(p)
		if strings.Contains(n.buf.String(), n.match) {
			n.done = true
			defer n.fn()
		}
	}
	return n.w.Write(p)
}
