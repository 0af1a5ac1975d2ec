package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// bulkRecords is the size of the `credport import` run across the failover.
const bulkRecords = 20000

// cluster is credport on the formation: its binary, scratch folder, encryption key and API key.
type cluster struct {
	bin, dir, encKey, apiKey string
}

func (c *cluster) command(ctx context.Context, dbURL string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "CREDPORT_DATABASE_URL="+dbURL, "CREDPORT_ENCRYPTION_KEY="+c.encKey,
		"CREDPORT_API_KEY="+c.apiKey, "CREDPORT_LOG_FORMAT=json")
	return cmd
}

// setup migrates the database, creates an API key and the API_KEY integration the load uses.
func (c *cluster) setup(ctx context.Context, dbURL string) error {
	if out, err := c.command(ctx, dbURL, "migrate").CombinedOutput(); err != nil {
		return fmt.Errorf("credport migrate: %w: %s", err, out)
	}
	var stderr bytes.Buffer
	cmd := c.command(ctx, dbURL, "keys", "create", "--env", "dev", "--name", "ha")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("credport keys create: %w: %s", err, stderr.String())
	}
	c.apiKey = strings.TrimSpace(string(out))
	if out, err := c.command(ctx, dbURL, "integrations", "create", "--env", "dev", "--unique-key", "openai",
		"--provider", "openai", "--auth-mode", "API_KEY").CombinedOutput(); err != nil {
		return fmt.Errorf("credport integrations create: %w: %s", err, out)
	}
	return nil
}

// result is what one scenario saw.
type result struct {
	name            string
	failoverGap     time.Duration // longest time without a successful import
	imports, reads  map[int]int
	noAnswer        []string
	lost            int
	lostExample     error
	readyDuring     map[int]int // /ready answers after the kill, before the end
	readyAfter      []string    // a replica that was not ready again, or could not import
	bulkExit        int
	bulkSpanned     bool // the bulk import was still running when the primary was killed
	bulkCount       int
	bulkDistinct    int
	bulkTook        time.Duration
	durabilityStart string
}

func (r result) print() {
	fmt.Printf("== %s: failover gap %v; imports %s; reads %s; /ready after the kill %s; lost %d of the acknowledged imports\n",
		r.name, r.failoverGap.Round(10*time.Millisecond), counts(r.imports), counts(r.reads), counts(r.readyDuring), r.lost)
	fmt.Printf("== %s: credport import of %d records: exit %d in %v, across the kill %v, rows %d (distinct %d); /ready before: %s\n",
		r.name, bulkRecords, r.bulkExit, r.bulkTook.Round(100*time.Millisecond), r.bulkSpanned, r.bulkCount, r.bulkDistinct, r.durabilityStart)
}

func counts(m map[int]int) string {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		label := fmt.Sprint(k)
		if k == 0 {
			label = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", label, m[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func (r result) problems() []string {
	var p []string
	for _, m := range []map[int]int{r.imports, r.reads} {
		for status, n := range m {
			if status != http.StatusOK && status != http.StatusServiceUnavailable {
				p = append(p, fmt.Sprintf("%d answers %d", n, status))
			}
		}
	}
	if len(r.noAnswer) > 0 {
		p = append(p, fmt.Sprintf("%d requests failed, first: %s", len(r.noAnswer), r.noAnswer[0]))
	}
	if r.lost > 0 {
		p = append(p, fmt.Sprintf("%d acknowledged imports lost, e.g. %v", r.lost, r.lostExample))
	}
	if r.failoverGap > 15*time.Second {
		p = append(p, fmt.Sprintf("imports stopped for %v", r.failoverGap))
	}
	if r.readyDuring[http.StatusServiceUnavailable] == 0 {
		p = append(p, "/ready never answered 503 during the failover")
	}
	p = append(p, r.readyAfter...)
	if r.bulkExit != 0 || r.bulkCount != bulkRecords || r.bulkDistinct != bulkRecords {
		p = append(p, fmt.Sprintf("credport import: exit %d, %d rows (%d distinct), want exit 0 and %d", r.bulkExit, r.bulkCount, r.bulkDistinct, bulkRecords))
	}
	if !r.bulkSpanned {
		p = append(p, "credport import ended before the primary was killed")
	}
	return p
}

// replica is one running `credport serve`.
type replica struct {
	cmd  *exec.Cmd
	base string
}

func (c *cluster) startReplicas(ctx context.Context, name, dbURL string) ([]*replica, error) {
	var rs []*replica
	for i := range 2 {
		port, err := freePort()
		if err != nil {
			return rs, err
		}
		logf, err := os.Create(filepath.Join(c.dir, fmt.Sprintf("serve-%s-%d.log", name, i+1)))
		if err != nil {
			return rs, err
		}
		cmd := c.command(context.WithoutCancel(ctx), dbURL, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--refresh-interval", "2s")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return rs, err
		}
		rs = append(rs, &replica{cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port)})
	}
	for _, r := range rs {
		if _, err := waitReady(ctx, r.base, 60*time.Second); err != nil {
			return rs, err
		}
	}
	return rs, nil
}

func stopReplicas(rs []*replica) {
	for _, r := range rs {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, r := range rs {
		done := make(chan struct{})
		go func() { _ = r.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = r.cmd.Process.Kill()
			<-done
		}
	}
}

// waitReady polls /ready until it answers 200 and returns its body.
func waitReady(ctx context.Context, base string, limit time.Duration) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(limit)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/ready", nil)
		resp, err := client.Do(req)
		if err == nil {
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return strings.TrimSpace(b.String()), nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", fmt.Errorf("%s/ready not 200 within %v", base, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writeBulk writes the JSON Lines file of the bulk import.
func (c *cluster) writeBulk(name string) (string, error) {
	path := filepath.Join(c.dir, name+"-bulk.jsonl")
	fh, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriter(fh)
	for i := range bulkRecords {
		b, _ := json.Marshal(map[string]any{"provider_config_key": "openai", "connection_id": fmt.Sprintf("%s-bulk-%d", name, i),
			"credentials": map[string]string{"type": "API_KEY", "apiKey": fmt.Sprintf("sk-bulk-%d", i)}})
		_, _ = w.Write(append(b, '\n'))
	}
	if err := w.Flush(); err != nil {
		_ = fh.Close()
		return "", err
	}
	return path, fh.Close()
}

// scenario runs the replicas on dbURL under load, kills the primary, lets the load run on for
// after, and checks what was kept.
func (c *cluster) scenario(ctx context.Context, f *formation, name, dbURL string, after time.Duration) (result, error) {
	r := result{name: name, readyDuring: map[int]int{}}
	bulk, err := c.writeBulk(name)
	if err != nil {
		return r, err
	}
	rs, err := c.startReplicas(ctx, name, dbURL)
	defer stopReplicas(rs)
	if err != nil {
		return r, err
	}
	bases := []string{rs[0].base, rs[1].base}
	if r.durabilityStart, err = waitReady(ctx, bases[0], time.Second); err != nil {
		return r, err
	}
	l := newLoad(c.apiKey, name, bases)
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { l.importer(loadCtx, i) })
		wg.Go(func() { l.reader(loadCtx, i) })
	}
	loadStart := time.Now()
	log.Printf("%s: 2 replicas, 8 import clients and 8 readers running", name)
	time.Sleep(4 * time.Second)

	bulkCmd := c.command(context.WithoutCancel(ctx), dbURL, "import", "--url", bases[0], "--max-retries", "20",
		"--batch-size", "100", "--concurrency", "2", "--state", filepath.Join(c.dir, name+".state"), bulk)
	bulkLog, err := os.Create(filepath.Join(c.dir, name+"-import.log"))
	if err != nil {
		stopLoad()
		return r, err
	}
	bulkCmd.Stdout, bulkCmd.Stderr = bulkLog, bulkLog
	bulkStart := time.Now()
	if err := bulkCmd.Start(); err != nil {
		stopLoad()
		return r, err
	}
	bulkDone := make(chan error, 1)
	var bulkEnd time.Time
	go func() { err := bulkCmd.Wait(); bulkEnd = time.Now(); bulkDone <- err }()
	time.Sleep(time.Second)

	primary, err := f.primary(ctx)
	if err != nil {
		stopLoad()
		return r, err
	}
	killed := time.Now()
	if err := f.kill(primary); err != nil {
		stopLoad()
		return r, err
	}
	log.Printf("%s: killed %s (keeper and postmaster, SIGKILL)", name, primary.name)

	// /ready of both replicas, polled until the end of the load.
	readyCtx, stopReady := context.WithCancel(ctx)
	var readyWG sync.WaitGroup
	for _, b := range bases {
		readyWG.Go(func() {
			client := &http.Client{Timeout: 5 * time.Second}
			for readyCtx.Err() == nil {
				status := 0
				if resp, err := client.Get(b + "/ready"); err == nil {
					status = resp.StatusCode
					resp.Body.Close()
				}
				l.mu.Lock()
				r.readyDuring[status]++
				l.mu.Unlock()
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
	time.Sleep(time.Until(killed.Add(after)))
	stopLoad()
	wg.Wait()
	stopReady()
	readyWG.Wait()
	end := time.Now()
	log.Printf("%s: load stopped %v after the kill", name, end.Sub(killed).Round(100*time.Millisecond))

	select {
	case err := <-bulkDone:
		r.bulkExit = exitCode(err)
	case <-time.After(120 * time.Second):
		_ = bulkCmd.Process.Kill()
		<-bulkDone
		r.bulkExit = -1
	}
	_ = bulkLog.Close()
	r.bulkTook = bulkEnd.Sub(bulkStart)
	r.bulkSpanned = bulkEnd.After(killed)

	r.failoverGap = l.longestGap(loadStart, end)
	r.imports, r.reads, r.noAnswer = l.imports, l.reads, l.noAnswer

	// Both replicas serve again, without a restart: ready, and each takes an import.
	for i, b := range bases {
		if _, err := waitReady(ctx, b, 30*time.Second); err != nil {
			r.readyAfter = append(r.readyAfter, fmt.Sprintf("replica %d: %v", i+1, err))
			continue
		}
		status, body, err := l.request(ctx, http.MethodPost, b, "/connections", importBody(fmt.Sprintf("%s-after-%d", name, i), "sk-after"))
		if status != http.StatusOK || err != nil {
			r.readyAfter = append(r.readyAfter, fmt.Sprintf("replica %d: import after the failover: %d %v %.200s", i+1, status, err, body))
		}
	}
	r.lost, r.lostExample = l.lost(ctx)

	newPrimary, err := f.primary(ctx)
	if err != nil {
		return r, err
	}
	db, err := sql.Open("pgx", fmt.Sprintf("postgres://postgres@127.0.0.1:%d/credport", newPrimary.port))
	if err != nil {
		return r, err
	}
	defer db.Close()
	if err := db.QueryRowContext(ctx, `SELECT count(*), count(DISTINCT connection_id) FROM connections WHERE connection_id LIKE $1`,
		name+"-bulk-%").Scan(&r.bulkCount, &r.bulkDistinct); err != nil {
		return r, err
	}
	return r, nil
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}
