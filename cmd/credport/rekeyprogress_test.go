package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/store"
)

// rekeyFixture is an SQLite database whose 20 connections are sealed with oldKey.
func rekeyFixture(t *testing.T, oldKey string) string {
	t.Helper()
	dbPath := filepath.Join(t.TempDir(), "credport.db")
	db := rekeyOpenStore(t, dbPath, oldKey)
	in, err := db.CreateIntegration(context.Background(), store.NewIntegration{Environment: "dev", UniqueKey: "k", Provider: "stripe", AuthMode: "API_KEY"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := db.UpsertConnection(context.Background(), store.UpsertConnection{EnvironmentID: in.EnvironmentID, Integration: in,
			ConnectionID: fmt.Sprint(i), Credentials: json.RawMessage(`{"type":"API_KEY","apiKey":"k"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dbPath
}

// TestRekeyProgress: off a terminal, rekey reports its progress once every 5 seconds, not once a
// batch; on a terminal, as a bar.
func TestRekeyProgress(t *testing.T) {
	oldKey, newKey := store.NewKey(), store.NewKey()
	cases := []struct {
		name      string
		terminal  bool
		step      time.Duration // how far the clock moves at each reading
		wantLines int           // progress lines
	}{
		// 20 batches of one connection; the clock reads 2 s later at each batch: a line every third.
		{name: "a line every 5 seconds", step: 2 * time.Second, wantLines: 6},
		{name: "a fast run prints none", step: time.Millisecond, wantLines: 0},
		{name: "a bar on a terminal", terminal: true, step: rekeyProgressEvery},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dbPath := rekeyFixture(t, oldKey)
			env := map[string]string{"CREDPORT_DATABASE_URL": dbPath, "CREDPORT_ENCRYPTION_KEY": newKey + "," + oldKey,
				"CREDPORT_LOG_LEVEL": "error"}
			var stderr io.Writer
			var errBuf bytes.Buffer
			stderr = &errBuf
			logged := errBuf.String
			if tc.terminal {
				pt, tty := openPTY(t)
				stderr = tty
				var buf syncBuffer
				copied := make(chan struct{})
				go func() { _, _ = io.Copy(&buf, pt); close(copied) }()
				logged = func() string {
					_ = tty.Close()
					<-copied
					return buf.String()
				}
			}
			var out bytes.Buffer
			a := &app{getenv: func(k string) string { return env[k] }, stdout: &out, stderr: stderr, now: steppingClock(tc.step)}
			root := newRoot(a)
			root.SetArgs([]string{"rekey", "--batch-size", "1"})
			if err := root.ExecuteContext(context.Background()); err != nil {
				t.Fatalf("rekey: %v\n%s", err, logged())
			}
			got := logged()
			lines := strings.Count(got, "rekey: connections ")
			if tc.terminal {
				if lines != 0 || !strings.Contains(got, "20/20") || !strings.Contains(got, "values") {
					t.Errorf("on a terminal rekey wrote %q, want a bar at 20/20 and no progress lines", got)
				}
			} else if lines != tc.wantLines {
				t.Errorf("%d progress lines, want %d:\n%s", lines, tc.wantLines, got)
			}
			if !strings.Contains(out.String(), "rekey: connections 20 re-sealed") {
				t.Errorf("stdout %q, want the summary", out.String())
			}
		})
	}
}
