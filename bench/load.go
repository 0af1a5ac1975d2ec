package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

type loadConfig struct {
	baseURL  string
	secret   string
	clients  int
	warmup   time.Duration
	duration time.Duration
	// serverPID is sampled for CPU time over the measured window.
	serverPID int
}

// connectionIDPrefix marks the connections the load imports, so that they can be counted.
const connectionIDPrefix = "bench-"

// readIDsPerClient bounds how many of its imported connection ids each client keeps for the
// read scenarios.
const readIDsPerClient = 1000

// runLoad drives POST /connections from cfg.clients closed-loop clients: each sends its next
// request as soon as the previous one is answered. Throughput and latencies are those of the
// requests that complete inside the measured window; errors are counted over the whole run. It
// also returns ids of connections it imported, for the reads.
func runLoad(ctx context.Context, cfg loadConfig) (loadStats, []string, error) {
	transport := &http.Transport{
		MaxIdleConns:        cfg.clients * 2,
		MaxIdleConnsPerHost: cfg.clients * 2,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	expiresAt := time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	measureFrom := start.Add(cfg.warmup)
	measureTo := measureFrom.Add(cfg.duration)

	// Sample CPU times at the edges of the measured window.
	var cpu cpuWindow
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		cpu.sample(parent, cfg.serverPID, measureFrom, measureTo)
	}()

	workers := make([]worker, cfg.clients)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.client, w.cfg, w.index, w.expiresAt = client, cfg, i, expiresAt
		w.rng = rand.New(rand.NewPCG(uint64(i)+1, uint64(start.UnixNano())))
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, measureFrom, measureTo)
		}()
	}
	wg.Wait()
	cancel()
	<-samplerDone
	if err := parent.Err(); err != nil {
		return loadStats{}, nil, fmt.Errorf("load interrupted: %w", err)
	}

	var stats loadStats
	var latencies []time.Duration
	var ids []string
	errorKinds := map[string]int{}
	for i := range workers {
		w := &workers[i]
		latencies = append(latencies, w.latencies...)
		ids = append(ids, w.imported...)
		stats.Errors += w.errors
		stats.Sent += w.sent
		stats.Succeeded += w.succeeded
		for k, n := range w.errorKinds {
			errorKinds[k] += n
		}
		if w.bodyBytes > stats.BodyBytes {
			stats.BodyBytes = w.bodyBytes
		}
		if w.checkErr != "" {
			errorKinds[w.checkErr]++
			stats.Errors++
		}
	}
	for k, n := range errorKinds {
		stats.ErrorKinds = append(stats.ErrorKinds, errorKind{Kind: k, Count: n})
	}
	slices.SortFunc(stats.ErrorKinds, func(a, b errorKind) int { return b.Count - a.Count })
	stats.Imported = int64(len(latencies))
	stats.ImportsPerSecond = float64(len(latencies)) / cfg.duration.Seconds()
	stats.Latency = summarize(latencies)
	if cpu.ok {
		window := cpu.wall.Seconds()
		stats.ServerCPUPercent = 100 * cpu.server.Seconds() / window
		stats.ClientCPUPercent = 100 * cpu.client.Seconds() / window
		if cpu.hostTotal > 0 {
			stats.HostCPUBusyPercent = 100 * float64(cpu.hostBusy) / float64(cpu.hostTotal)
		}
		if stats.ImportsPerSecond > 0 {
			stats.ServerCPUPerImport = 1e6 * cpu.server.Seconds() / window / stats.ImportsPerSecond
		}
	}
	return stats, ids, nil
}

// worker is one closed-loop client.
type worker struct {
	client    *http.Client
	cfg       loadConfig
	index     int
	expiresAt string
	rng       *rand.Rand

	seq        int
	sent       int64
	succeeded  int64
	errors     int64
	errorKinds map[string]int
	latencies  []time.Duration
	bodyBytes  int
	checkErr   string
	// imported holds the first readIDsPerClient connection ids this client imported.
	imported []string
}

func (w *worker) loop(ctx context.Context, measureFrom, measureTo time.Time) {
	w.errorKinds = map[string]int{}
	w.latencies = make([]time.Duration, 0, 1<<14)
	url := w.cfg.baseURL + "/connections"
	auth := "Bearer " + w.cfg.secret
	var buf bytes.Buffer
	checked := false
	for ctx.Err() == nil {
		if time.Now().After(measureTo) {
			return
		}
		w.seq++
		// A random part first spreads the imports over the unique index as an import of
		// arbitrary ids would, and as pgbench's random ids do; the client and sequence number
		// keep every id distinct.
		connectionID := connectionIDPrefix + strconv.FormatUint(1+w.rng.Uint64N(1_000_000_000_000), 10) +
			"-" + strconv.Itoa(w.index) + "-" + strconv.Itoa(w.seq)
		body := w.body(connectionID)
		w.bodyBytes = max(w.bodyBytes, len(body))
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			w.checkErr = err.Error()
			return
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		t0 := time.Now()
		res, err := w.client.Do(req)
		var status int
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(res.Body)
			res.Body.Close()
			status = res.StatusCode
		}
		t1 := time.Now()
		w.sent++
		if ctx.Err() != nil {
			return
		}
		// Errors count whenever they happen, warm-up included; latencies only in the window.
		switch {
		case err != nil:
			w.errors++
			w.errorKinds["transport: "+err.Error()]++
			continue
		case status != http.StatusOK:
			w.errors++
			w.errorKinds[fmt.Sprintf("HTTP %d: %s", status, truncate(buf.String(), 200))]++
			continue
		}
		w.succeeded++
		if len(w.imported) < readIDsPerClient {
			w.imported = append(w.imported, connectionID)
		}
		if !checked {
			checked = true
			w.checkResponse(buf.Bytes(), connectionID)
		}
		if !t1.Before(measureFrom) && !t1.After(measureTo) {
			w.latencies = append(w.latencies, t1.Sub(t0))
		}
	}
}

// checkResponse makes sure that a 200 is the connection that was sent, once per client.
func (w *worker) checkResponse(body []byte, connectionID string) {
	var got struct {
		ConnectionID string `json:"connection_id"`
		Credentials  struct {
			RefreshToken string `json:"refresh_token"`
		} `json:"credentials"`
		Tags map[string]string `json:"tags"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		w.checkErr = "response is not JSON: " + err.Error()
		return
	}
	if got.ConnectionID != connectionID || got.Credentials.RefreshToken == "" || len(got.Tags) != 2 {
		w.checkErr = "response is not the imported connection: " + truncate(string(body), 200)
	}
}

// body is an import as a migration from another credential store would send it: OAuth 2 tokens
// with a refresh token and an expiry, some metadata and two tags; about 600 bytes.
func (w *worker) body(connectionID string) []byte {
	b := make([]byte, 0, 700)
	b = append(b, `{"provider_config_key":"`+benchIntegration+`","connection_id":"`...)
	b = append(b, connectionID...)
	b = append(b, `","credentials":{"type":"OAUTH2","access_token":"gho_`...)
	b = w.appendToken(b, 36)
	b = append(b, `","refresh_token":"ghr_`...)
	b = w.appendToken(b, 76)
	b = append(b, `","expires_at":"`...)
	b = append(b, w.expiresAt...)
	b = append(b, `"},"metadata":{"account_id":"acct_`...)
	b = w.appendToken(b, 16)
	b = append(b, `","account_name":"Example Corporation","plan":"enterprise","region":"eu-west-1",`+
		`"imported_from":"legacy-vault","scopes":["repo","read:org","workflow","read:user"],"seats":`...)
	b = strconv.AppendInt(b, int64(1+w.rng.IntN(500)), 10)
	b = append(b, `,"migrated":true},"tags":{"end_user_id":"user-`...)
	b = strconv.AppendInt(b, int64(w.rng.IntN(10_000_000)), 10)
	b = append(b, `","organization_id":"org-`...)
	b = strconv.AppendInt(b, int64(w.rng.IntN(orgCount)), 10)
	b = append(b, `"}}`...)
	return b
}

const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func (w *worker) appendToken(b []byte, n int) []byte {
	for range n {
		b = append(b, tokenAlphabet[w.rng.IntN(len(tokenAlphabet))])
	}
	return b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// cpuWindow is the CPU the server and the whole host used over the measured window.
type cpuWindow struct {
	ok                  bool
	wall                time.Duration
	server, client      time.Duration
	hostBusy, hostTotal int64
}

func (c *cpuWindow) sample(ctx context.Context, pid int, from, to time.Time) {
	wait := func(t time.Time) bool {
		select {
		case <-time.After(time.Until(t)):
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !wait(from) {
		return
	}
	self := os.Getpid()
	t0 := time.Now()
	s0, err1 := procCPU(pid)
	c0, err2 := procCPU(self)
	b0, n0, err3 := hostCPU()
	if err1 != nil || err2 != nil || err3 != nil || !wait(to) {
		return
	}
	t1 := time.Now()
	s1, err1 := procCPU(pid)
	c1, err2 := procCPU(self)
	b1, n1, err3 := hostCPU()
	if err1 != nil || err2 != nil || err3 != nil {
		return
	}
	*c = cpuWindow{ok: true, wall: t1.Sub(t0), server: s1 - s0, client: c1 - c0, hostBusy: b1 - b0, hostTotal: n1 - n0}
}

// latency is a summary of request latencies, in milliseconds.
type latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func summarize(d []time.Duration) latency {
	if len(d) == 0 {
		return latency{}
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	// Nearest rank: the smallest value with at least p of the samples at or below it.
	at := func(p float64) float64 {
		i := int(math.Ceil(float64(len(d))*p)) - 1
		return ms(d[min(max(i, 0), len(d)-1)])
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return latency{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(d[len(d)-1]), Mean: ms(sum / time.Duration(len(d)))}
}
