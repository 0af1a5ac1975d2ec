package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// result is one benchmark run, as printed and as written to JSON.
type result struct {
	StartedAt      time.Time `json:"started_at"`
	Database       string    `json:"database"`
	DatabaseName   string    `json:"database_name,omitempty"`
	Clients        int       `json:"clients"`
	Duration       float64   `json:"duration_s"`
	Warmup         float64   `json:"warmup_s"`
	Preload        int       `json:"preload"`
	PreloadSeconds float64   `json:"preload_s,omitempty"`
	Host           host      `json:"host"`

	Load    loadStats     `json:"credport"`
	Server  serverStats   `json:"server"`
	Pgbench *pgbenchStats `json:"pgbench"`
	// Ratio is credport's imports/s over pgbench's transactions/s.
	Ratio *float64 `json:"ratio_credport_pgbench"`
	// Reads are the read scenarios, measured after the imports on the same server and table.
	Reads []readStats `json:"reads,omitempty"`
	// Bulk is `credport import` of a file, and pgbench's multi-row upsert beside it.
	Bulk *bulkStats `json:"bulk,omitempty"`
	// Webhooks is set by a run with --webhooks.
	Webhooks *webhookStats `json:"webhooks,omitempty"`
}

type host struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	GoVersion string `json:"go_version"`
}

type loadStats struct {
	// Imported counts the 200 answers completed in the measured window.
	Imported         int64   `json:"imported"`
	ImportsPerSecond float64 `json:"imports_per_s"`
	Latency          latency `json:"latency"`
	// Errors counts failed requests of the whole run, warm-up included.
	Errors     int64       `json:"errors"`
	ErrorKinds []errorKind `json:"error_kinds,omitempty"`
	// Sent counts every request and Succeeded every 200, warm-up included.
	Sent       int64 `json:"sent"`
	Succeeded  int64 `json:"succeeded"`
	BodyBytes  int   `json:"body_bytes"`
	RowsStored int64 `json:"rows_stored"`
	// ServerCPUPercent is the server's CPU time over the window (100 = one core busy).
	ServerCPUPercent float64 `json:"server_cpu_percent"`
	// ServerCPUPerImport is the server's CPU time per import, in microseconds.
	ServerCPUPerImport float64 `json:"server_cpu_us_per_import"`
	// ClientCPUPercent is the load generator's CPU time over the window (100 = one core busy).
	ClientCPUPercent float64 `json:"client_cpu_percent"`
	// HostCPUBusyPercent is how busy all the machine's CPUs were (100 = all of them).
	HostCPUBusyPercent float64 `json:"host_cpu_busy_percent"`
}

type readStats struct {
	Name    string `json:"name"`
	Request string `json:"request"`
	Clients int    `json:"clients"`
	// Requests counts the 200 answers completed in the measured window.
	Requests          int64   `json:"requests"`
	RequestsPerSecond float64 `json:"requests_per_s"`
	Latency           latency `json:"latency"`
	// Errors counts failed requests of the whole run, warm-up included.
	Errors     int64       `json:"errors"`
	ErrorKinds []errorKind `json:"error_kinds,omitempty"`
	// RowsPerPage is the mean number of connections a list page held.
	RowsPerPage *float64 `json:"rows_per_page,omitempty"`
	// ServerCPUPerRequest is the server's CPU time per request, in microseconds.
	ServerCPUPerRequest float64 `json:"server_cpu_us_per_request"`
	HostCPUBusyPercent  float64 `json:"host_cpu_busy_percent"`
}

// read is the read scenario of that name, or nil.
func (r *result) read(name string) *readStats {
	for i := range r.Reads {
		if r.Reads[i].Name == name {
			return &r.Reads[i]
		}
	}
	return nil
}

type errorKind struct {
	Kind  string `json:"kind"`
	Count int    `json:"count"`
}

type serverStats struct {
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

type pgbenchStats struct {
	TPS float64 `json:"tps"`
	// RowsPerSecond is TPS times the rows each transaction upserts.
	RowsPerSecond float64 `json:"rows_per_s"`
	LatencyAvgMs  float64 `json:"latency_avg_ms"`
	Transactions  int64   `json:"transactions"`
	Failed        int64   `json:"failed"`
	Seconds       int     `json:"duration_s"`
	// HostCPUBusyPercent is how busy all the machine's CPUs were during the measured run.
	HostCPUBusyPercent float64 `json:"host_cpu_busy_percent"`
}

// report prints the table and, for a run that completed, writes the JSON files.
func report(w io.Writer, o options, res *result, completed bool) error {
	var base *result
	if o.baseline != "" {
		data, err := os.ReadFile(o.baseline)
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		base = new(result)
		if err := json.Unmarshal(data, base); err != nil {
			return fmt.Errorf("baseline %s: %w", o.baseline, err)
		}
	}
	printTable(w, res, base, o.baseline)
	if !completed {
		return nil
	}
	return writeJSON(o.out, res)
}

func printTable(w io.Writer, res, base *result, baseName string) {
	fmt.Fprintf(w, "\ncredport POST /connections, then reads — %s, %d clients, %gs measured after %gs warm-up each, preload %d, body %d B\n",
		res.Database, res.Clients, res.Duration, res.Warmup, res.Preload, res.Load.BodyBytes)
	for _, r := range res.Reads {
		fmt.Fprintf(w, "%s: %s, %d clients\n", r.Name, r.Request, r.Clients)
	}
	fmt.Fprintf(w, "host: %d CPUs, %s, %s\n\n", res.Host.CPUs, res.Host.CPUModel, res.Host.GoVersion)

	type row struct {
		name string
		get  func(*result) string
	}
	f1 := func(x float64) string { return fmt.Sprintf("%.1f", x) }
	f2 := func(x float64) string { return fmt.Sprintf("%.2f", x) }
	rows := []row{
		{"imports/s", func(r *result) string { return f1(r.Load.ImportsPerSecond) }},
		{"p50 latency (ms)", func(r *result) string { return f2(r.Load.Latency.P50) }},
		{"p90 latency (ms)", func(r *result) string { return f2(r.Load.Latency.P90) }},
		{"p99 latency (ms)", func(r *result) string { return f2(r.Load.Latency.P99) }},
		{"errors", func(r *result) string { return fmt.Sprint(r.Load.Errors) }},
		{"webhooks received", func(r *result) string {
			if r.Webhooks == nil {
				return "-"
			}
			return fmt.Sprint(r.Webhooks.Received)
		}},
		{"server peak RSS (MiB)", func(r *result) string { return f1(r.Server.PeakRSSMiB) }},
		{"server CPU (% of a core)", func(r *result) string { return f1(r.Load.ServerCPUPercent) }},
		{"server CPU per import (µs)", func(r *result) string { return f1(r.Load.ServerCPUPerImport) }},
		{"load generator CPU (% of a core)", func(r *result) string { return f1(r.Load.ClientCPUPercent) }},
		{"host CPU busy (%)", func(r *result) string { return f1(r.Load.HostCPUBusyPercent) }},
		{"pgbench TPS", func(r *result) string {
			if r.Pgbench == nil {
				return "n/a"
			}
			return f1(r.Pgbench.TPS)
		}},
		{"pgbench latency avg (ms)", func(r *result) string {
			if r.Pgbench == nil {
				return "n/a"
			}
			return f2(r.Pgbench.LatencyAvgMs)
		}},
		{"pgbench host CPU busy (%)", func(r *result) string {
			if r.Pgbench == nil {
				return "n/a"
			}
			return f1(r.Pgbench.HostCPUBusyPercent)
		}},
		{"credport / pgbench", func(r *result) string {
			if r.Ratio == nil {
				return "n/a"
			}
			return fmt.Sprintf("%.3f", *r.Ratio)
		}},
	}
	for _, name := range readNames(res, base) {
		read := func(f func(r *result, s *readStats) string) func(*result) string {
			return func(r *result) string {
				if s := r.read(name); s != nil {
					return f(r, s)
				}
				return "n/a"
			}
		}
		rows = append(rows,
			row{name + "/s", read(func(_ *result, s *readStats) string { return f1(s.RequestsPerSecond) })},
			row{name + " p50 / p90 / p99 (ms)", read(func(_ *result, s *readStats) string {
				return f2(s.Latency.P50) + " / " + f2(s.Latency.P90) + " / " + f2(s.Latency.P99)
			})},
			row{name + " / imports", read(func(r *result, s *readStats) string {
				if r.Load.ImportsPerSecond == 0 {
					return "n/a"
				}
				return f2(s.RequestsPerSecond / r.Load.ImportsPerSecond)
			})},
			row{name + " errors", read(func(_ *result, s *readStats) string { return fmt.Sprint(s.Errors) })},
			row{name + " server CPU per request (µs)", read(func(_ *result, s *readStats) string { return f1(s.ServerCPUPerRequest) })},
		)
		if s := res.read(name); s != nil && s.RowsPerPage != nil {
			rows = append(rows, row{name + " rows per page", read(func(_ *result, s *readStats) string {
				if s.RowsPerPage == nil {
					return "n/a"
				}
				return f1(*s.RowsPerPage)
			})})
		}
	}
	bulk := func(f func(b *bulkStats) string) func(*result) string {
		return func(r *result) string {
			if r.Bulk == nil {
				return "n/a"
			}
			return f(r.Bulk)
		}
	}
	bulkPgbench := func(f func(p *pgbenchStats) string) func(*result) string {
		return bulk(func(b *bulkStats) string {
			if b.Pgbench == nil {
				return "n/a"
			}
			return f(b.Pgbench)
		})
	}
	if res.Bulk != nil || (base != nil && base.Bulk != nil) {
		rows = append(rows,
			row{"bulk: credport import records", bulk(func(b *bulkStats) string { return fmt.Sprint(b.Records) })},
			row{"bulk: batch size", bulk(func(b *bulkStats) string {
				switch {
				case !b.Batched:
					return "none (one request a record)"
				case b.BatchSize == 0:
					return "tool default"
				}
				return fmt.Sprint(b.BatchSize)
			})},
			row{"bulk: records/s", bulk(func(b *bulkStats) string { return f1(b.RecordsPerSecond) })},
			row{"bulk: seconds", bulk(func(b *bulkStats) string { return f1(b.Seconds) })},
			row{"bulk: server CPU per record (µs)", bulk(func(b *bulkStats) string { return f1(b.ServerCPUPerRecord) })},
			row{"bulk: import tool CPU per record (µs)", bulk(func(b *bulkStats) string { return f1(b.ToolCPUPerRecord) })},
			row{"bulk: host CPU busy (%)", bulk(func(b *bulkStats) string { return f1(b.HostCPUBusyPercent) })},
			row{"bulk: server peak RSS (MiB)", bulk(func(b *bulkStats) string { return f1(b.ServerPeakRSSMiB) })},
			row{fmt.Sprintf("bulk: pgbench %d-row upsert rows/s (%d clients)", bulkStatementRows, bulkPgbenchClients),
				bulkPgbench(func(p *pgbenchStats) string { return f1(p.RowsPerSecond) })},
			row{"bulk: pgbench host CPU busy (%)", bulkPgbench(func(p *pgbenchStats) string { return f1(p.HostCPUBusyPercent) })},
			row{"bulk: credport / pgbench", bulk(func(b *bulkStats) string {
				if b.Ratio == nil {
					return "n/a"
				}
				return fmt.Sprintf("%.3f", *b.Ratio)
			})},
		)
	}
	header := "| metric | this run |"
	rule := "|---|---:|"
	if base != nil {
		header += fmt.Sprintf(" baseline (%s, preload %d) |", filepath.Base(baseName), base.Preload)
		rule += "---:|"
	}
	fmt.Fprintln(w, header)
	fmt.Fprintln(w, rule)
	for _, r := range rows {
		line := "| " + r.name + " | " + r.get(res) + " |"
		if base != nil {
			line += " " + r.get(base) + " |"
		}
		fmt.Fprintln(w, line)
	}
	printErrors(w, "errors", res.Load.ErrorKinds)
	for _, r := range res.Reads {
		printErrors(w, r.Name+" errors", r.ErrorKinds)
	}
	fmt.Fprintln(w)
}

// readNames are the read scenarios of res and then those only base has, in order.
func readNames(res, base *result) []string {
	var names []string
	for _, r := range []*result{res, base} {
		if r == nil {
			continue
		}
		for _, s := range r.Reads {
			if !slices.Contains(names, s.Name) {
				names = append(names, s.Name)
			}
		}
	}
	return names
}

func printErrors(w io.Writer, title string, kinds []errorKind) {
	if len(kinds) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, k := range kinds {
		if i == 10 {
			fmt.Fprintf(tw, "  …\t%d more kinds\n", len(kinds)-10)
			break
		}
		fmt.Fprintf(tw, "  %d\t%s\n", k.Count, strings.ReplaceAll(k.Kind, "\n", " "))
	}
	tw.Flush()
}

// writeJSON writes the result as <timestamp>-<database>.json and latest-<database>.json in dir.
func writeJSON(dir string, res *result) error {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	stamped := filepath.Join(dir, res.StartedAt.Format("20060102T150405Z")+"-"+res.Database+".json")
	for _, path := range []string{stamped, filepath.Join(dir, "latest-"+res.Database+".json")} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s\n", stamped)
	return nil
}
