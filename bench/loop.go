package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

// loopClient is what one closed-loop client of a scenario sends and does with the answers;
// closedLoop does the rest.
type loopClient interface {
	// request builds the client's next request.
	request(ctx context.Context) (*http.Request, error)
	// check looks at the client's first 200 answer; an error counts as a failed request.
	check(body []byte) error
	// answered sees every 200 answer; measured is true when it completed in the measured window.
	answered(body []byte, measured bool)
}

// loopStats is what closedLoop measured over all its clients.
type loopStats struct {
	// measured counts the 200 answers completed in the measured window, perSecond is their rate.
	measured  int64
	perSecond float64
	latency   latency
	// errors counts failed requests of the whole run, warm-up included; errorKinds has the most
	// frequent kind first.
	errors     int64
	errorKinds []errorKind
	// sent counts every request and succeeded every 200, warm-up included.
	sent, succeeded int64
	cpu             cpuWindow
}

// closedLoop drives cfg.clients closed-loop clients, each made by newClient with a rand source of
// its own: a client sends its next request as soon as the previous one is answered. Throughput
// and latencies are those of the requests that complete inside the measured window, after
// cfg.warmup; errors are counted over the whole run. It returns the context's error when the run
// was interrupted.
func closedLoop(ctx context.Context, cfg loadConfig, newClient func(i int, rng *rand.Rand) loopClient) (loopStats, error) {
	transport := &http.Transport{
		MaxIdleConns:        cfg.clients * 2,
		MaxIdleConnsPerHost: cfg.clients * 2,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}

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

	runners := make([]loopRunner, cfg.clients)
	var wg sync.WaitGroup
	for i := range runners {
		r := &runners[i]
		r.client = client
		r.loopClient = newClient(i, rand.New(rand.NewPCG(uint64(i)+1, uint64(start.UnixNano()))))
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.loop(ctx, measureFrom, measureTo)
		}()
	}
	wg.Wait()
	cancel()
	<-samplerDone
	if err := parent.Err(); err != nil {
		return loopStats{}, err
	}

	stats := loopStats{cpu: cpu}
	var latencies []time.Duration
	errorKinds := map[string]int{}
	for i := range runners {
		r := &runners[i]
		latencies = append(latencies, r.latencies...)
		stats.errors += r.errors
		stats.sent += r.sent
		stats.succeeded += r.succeeded
		for k, n := range r.errorKinds {
			errorKinds[k] += n
		}
	}
	for k, n := range errorKinds {
		stats.errorKinds = append(stats.errorKinds, errorKind{Kind: k, Count: n})
	}
	slices.SortFunc(stats.errorKinds, func(a, b errorKind) int { return b.Count - a.Count })
	stats.measured = int64(len(latencies))
	stats.perSecond = float64(len(latencies)) / cfg.duration.Seconds()
	stats.latency = summarize(latencies)
	return stats, nil
}

// loopRunner runs one loopClient and keeps its counts, so that clients share none.
type loopRunner struct {
	loopClient
	client *http.Client

	sent       int64
	succeeded  int64
	errors     int64
	errorKinds map[string]int
	latencies  []time.Duration
}

func (r *loopRunner) loop(ctx context.Context, measureFrom, measureTo time.Time) {
	r.errorKinds = map[string]int{}
	r.latencies = make([]time.Duration, 0, 1<<14)
	var buf bytes.Buffer
	checked := false
	for ctx.Err() == nil {
		if time.Now().After(measureTo) {
			return
		}
		req, err := r.request(ctx)
		if err != nil {
			r.errors++
			r.errorKinds[err.Error()]++
			return
		}
		t0 := time.Now()
		res, err := r.client.Do(req)
		var status int
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(res.Body)
			res.Body.Close()
			status = res.StatusCode
		}
		t1 := time.Now()
		r.sent++
		if ctx.Err() != nil {
			return
		}
		// Errors count whenever they happen, warm-up included; latencies only in the window.
		switch {
		case err != nil:
			r.errors++
			r.errorKinds["transport: "+err.Error()]++
			continue
		case status != http.StatusOK:
			r.errors++
			r.errorKinds[fmt.Sprintf("HTTP %d: %s", status, truncate(buf.String(), 200))]++
			continue
		}
		r.succeeded++
		if !checked {
			checked = true
			if err := r.check(buf.Bytes()); err != nil {
				r.errors++
				r.errorKinds[err.Error()]++
			}
		}
		measured := !t1.Before(measureFrom) && !t1.After(measureTo)
		r.answered(buf.Bytes(), measured)
		if measured {
			r.latencies = append(r.latencies, t1.Sub(t0))
		}
	}
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

// percent is d over the window, 100 being one core busy throughout.
func (c cpuWindow) percent(d time.Duration) float64 {
	return 100 * d.Seconds() / c.wall.Seconds()
}

// hostBusyPercent is how busy all the machine's CPUs were, 100 being all of them; 0 if unknown.
func (c cpuWindow) hostBusyPercent() float64 {
	if c.hostTotal <= 0 {
		return 0
	}
	return 100 * float64(c.hostBusy) / float64(c.hostTotal)
}

// serverMicrosPer is the server's CPU time per request at perSecond requests a second, in
// microseconds; 0 when nothing completed.
func (c cpuWindow) serverMicrosPer(perSecond float64) float64 {
	if perSecond <= 0 {
		return 0
	}
	return 1e6 * c.server.Seconds() / c.wall.Seconds() / perSecond
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
