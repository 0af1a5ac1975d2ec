package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

type errorKind struct {
	Kind  string `json:"kind"`
	Count int    `json:"count"`
}

type serverStats struct {
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

type pgbenchStats struct {
	TPS          float64 `json:"tps"`
	LatencyAvgMs float64 `json:"latency_avg_ms"`
	Transactions int64   `json:"transactions"`
	Failed       int64   `json:"failed"`
	Seconds      int     `json:"duration_s"`
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
	fmt.Fprintf(w, "\ncredport POST /connections — %s, %d clients, %gs measured after %gs warm-up, preload %d, body %d B\n",
		res.Database, res.Clients, res.Duration, res.Warmup, res.Preload, res.Load.BodyBytes)
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
	if len(res.Load.ErrorKinds) > 0 {
		fmt.Fprintln(w, "\nerrors:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for i, k := range res.Load.ErrorKinds {
			if i == 10 {
				fmt.Fprintf(tw, "  …\t%d more kinds\n", len(res.Load.ErrorKinds)-10)
				break
			}
			fmt.Fprintf(tw, "  %d\t%s\n", k.Count, strings.ReplaceAll(k.Kind, "\n", " "))
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
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
