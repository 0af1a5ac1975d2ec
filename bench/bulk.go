package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// bulkIDPrefix marks the connections the bulk import creates.
const bulkIDPrefix = "bulk-"

// bulkPgbenchClients is how many clients run pgbench's multi-row upsert beside the bulk import.
const bulkPgbenchClients = 4

type bulkStats struct {
	Records int `json:"records"`
	// BatchSize is the --batch-size passed to credport import; 0 when the tool's default was
	// used, and Batched is false when the tool has no --batch-size (one request per record).
	BatchSize int     `json:"batch_size,omitempty"`
	Batched   bool    `json:"batched"`
	Seconds   float64 `json:"seconds"`
	// RecordsPerSecond is the records over the wall time of the whole `credport import` run.
	RecordsPerSecond float64 `json:"records_per_s"`
	RowsStored       int64   `json:"rows_stored"`
	// ServerCPUPerRecord and ToolCPUPerRecord are the CPU time of the server and of the import
	// tool per record, in microseconds.
	ServerCPUPerRecord float64 `json:"server_cpu_us_per_record"`
	ToolCPUPerRecord   float64 `json:"tool_cpu_us_per_record"`
	HostCPUBusyPercent float64 `json:"host_cpu_busy_percent"`
	ServerPeakRSSMiB   float64 `json:"server_peak_rss_mib"`
	// Summary is the import tool's last line on stdout.
	Summary string `json:"summary"`
	// Pgbench is the multi-row upsert run for as long as the import took (PostgreSQL only).
	Pgbench *pgbenchStats `json:"pgbench,omitempty"`
	// Ratio is RecordsPerSecond over pgbench's rows/s.
	Ratio *float64 `json:"ratio_credport_pgbench,omitempty"`
}

// writeBulkFile writes n import records in the load's body shape as JSON Lines, each with a
// connection id of its own.
func writeBulkFile(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	gen := importer{
		expiresAt: time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339),
		rng:       rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano()))),
	}
	for i := range n {
		id := bulkIDPrefix + strconv.FormatUint(1+gen.rng.Uint64N(1_000_000_000_000), 10) + "-" + strconv.Itoa(i)
		_, _ = w.Write(gen.body(id))
		_ = w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// importSupportsBatches tells whether this credport import has --batch-size.
func importSupportsBatches(ctx context.Context, bin string) (bool, error) {
	out, err := exec.CommandContext(ctx, bin, "import", "--help").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("credport import --help: %w\n%s", err, out)
	}
	return bytes.Contains(out, []byte("--batch-size")), nil
}

// runBulk imports records with `credport import` against a fresh server, then, on PostgreSQL,
// runs pgbench's multi-row upsert for as long as the import took.
func runBulk(ctx context.Context, o options, db *benchDB, bin, tmp, key, secret string) (*bulkStats, error) {
	file := filepath.Join(tmp, "bulk.jsonl")
	if err := writeBulkFile(file, o.bulkRecords); err != nil {
		return nil, fmt.Errorf("write the bulk file: %w", err)
	}
	defer os.Remove(file)
	batched, err := importSupportsBatches(ctx, bin)
	if err != nil {
		return nil, err
	}
	st := &bulkStats{Records: o.bulkRecords, Batched: batched}
	args := []string{"import", "--url", "", "--state", filepath.Join(tmp, "bulk.state"),
		"--report", filepath.Join(tmp, "bulk-failed.jsonl")}
	if batched && o.bulkBatchSize > 0 {
		st.BatchSize = o.bulkBatchSize
		args = append(args, "--batch-size", strconv.Itoa(o.bulkBatchSize))
	}
	args = append(args, file)

	srv, err := startServer(ctx, bin, tmp, db.url, key)
	if err != nil {
		return nil, err
	}
	args[2] = srv.baseURL
	fmt.Fprintf(os.Stderr, "bench: credport import of %d records (batches: %v)\n", o.bulkRecords, batched)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(clientEnv(), "CREDPORT_API_KEY="+secret)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	s0, cpuErr0 := procCPU(srv.pid())
	b0, n0, hostErr0 := hostCPU()
	start := time.Now()
	runErr := cmd.Run()
	elapsed := time.Since(start)
	s1, cpuErr1 := procCPU(srv.pid())
	b1, n1, hostErr1 := hostCPU()
	stats, stopErr := srv.stop()
	if runErr != nil {
		return nil, errors.Join(fmt.Errorf("credport import: %w\n%s", runErr, truncate(stderr.String(), 4000)), stopErr)
	}
	if stopErr != nil {
		return nil, stopErr
	}
	st.Seconds = elapsed.Seconds()
	st.RecordsPerSecond = float64(o.bulkRecords) / elapsed.Seconds()
	st.ServerPeakRSSMiB = stats.PeakRSSMiB
	if lines := strings.Split(strings.TrimSpace(stdout.String()), "\n"); len(lines) > 0 {
		st.Summary = lines[len(lines)-1]
	}
	if cpuErr0 == nil && cpuErr1 == nil {
		st.ServerCPUPerRecord = 1e6 * (s1 - s0).Seconds() / float64(o.bulkRecords)
	}
	if ps := cmd.ProcessState; ps != nil {
		st.ToolCPUPerRecord = 1e6 * (ps.UserTime() + ps.SystemTime()).Seconds() / float64(o.bulkRecords)
	}
	if hostErr0 == nil && hostErr1 == nil && n1 > n0 {
		st.HostCPUBusyPercent = 100 * float64(b1-b0) / float64(n1-n0)
	}
	if st.RowsStored, err = db.countRows(ctx, bulkIDPrefix); err != nil {
		return st, err
	}
	if st.RowsStored != int64(o.bulkRecords) {
		return st, fmt.Errorf("credport import reported success for %d records, but the table holds %d of them", o.bulkRecords, st.RowsStored)
	}

	if o.pgbench && !o.sqlite {
		if err := db.settle(ctx); err != nil {
			return st, err
		}
		fmt.Fprintf(os.Stderr, "bench: pgbench, %d-row upserts, %d clients, %s\n", bulkStatementRows, bulkPgbenchClients, elapsed.Round(time.Second))
		p, err := runPgbench(ctx, db, pgbenchConfig{
			dir: tmp, clients: bulkPgbenchClients, duration: elapsed,
			script: pgbenchBulkUpsert, rowsPerTx: bulkStatementRows,
		})
		if err != nil {
			return st, err
		}
		st.Pgbench = p
		if p.RowsPerSecond > 0 {
			ratio := st.RecordsPerSecond / p.RowsPerSecond
			st.Ratio = &ratio
		}
	}
	return st, nil
}

// clientEnv is the environment of a credport client process: this one's, without any credport
// setting.
func clientEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CREDPORT_") {
			env = append(env, kv)
		}
	}
	return env
}
