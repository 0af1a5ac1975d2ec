package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// orgCount is how many organizations the preload and the imports spread connections over: with
// 1,000,000 stored connections each one has 100 or more, a full list page.
const orgCount = 10_000

// readScenario is one kind of read, measured after the imports on the same server and table.
type readScenario struct {
	name string
	// request is how the report shows the request.
	request string
	secret  string
	// path is the path and query of a client's next request.
	path func(rng *rand.Rand) string
	// check looks at the first 200 answer of each client.
	check func(body []byte) error
	// pages is true for a list: the report counts the rows of each page.
	pages bool
}

// readScenarios are the reads of an application built on Nango's Node SDK: getConnection of the
// connections the load imported (their credentials are sealed for their own row, unlike the
// preloaded ones), and a list page of 100 filtered by a tag, as listConnections sends it, and by
// the end user's organization.
func readScenarios(secret string, ids []string) []readScenario {
	// In the order the SDK sends them.
	sdkQuery := "provider_config_key=" + url.QueryEscape(benchIntegration) +
		"&force_refresh=false&refresh_token=false&refresh_github_app_jwt_token=false"
	listPath := func(filter string) func(*rand.Rand) string {
		return func(rng *rand.Rand) string {
			q := url.Values{filter: {"org-" + strconv.Itoa(rng.IntN(orgCount))}, "limit": {"100"}}
			return "/connections?" + q.Encode()
		}
	}
	return []readScenario{
		{
			name:    "getConnection",
			request: fmt.Sprintf("GET /connections/{id}?%s, one of %d imported connections at random", sdkQuery, len(ids)),
			secret:  secret,
			path: func(rng *rand.Rand) string {
				return "/connections/" + url.PathEscape(ids[rng.IntN(len(ids))]) + "?" + sdkQuery
			},
			check: checkConnection,
		},
		{
			name:    "list by tag",
			request: "GET /connections?tags[organization_id]=org-N&limit=100",
			secret:  secret,
			path:    listPath("tags[organization_id]"),
			check:   checkPage(func(item listItem) bool { return item.Tags["organization_id"] != "" }),
			pages:   true,
		},
		{
			name:    "list by end user organization",
			request: "GET /connections?endUserOrganizationId=org-N&limit=100",
			secret:  secret,
			path:    listPath("endUserOrganizationId"),
			check: checkPage(func(item listItem) bool {
				return item.EndUser != nil && item.EndUser.Organization != nil && item.EndUser.Organization.ID != ""
			}),
			pages: true,
		},
	}
}

// checkConnection makes sure that a read answers the connection with its access token and,
// since refresh_token=false, without its refresh token.
func checkConnection(body []byte) error {
	var got struct {
		ConnectionID string `json:"connection_id"`
		Credentials  struct {
			AccessToken string `json:"access_token"`
		} `json:"credentials"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		return fmt.Errorf("response is not JSON: %w", err)
	}
	if got.ConnectionID == "" || got.Credentials.AccessToken == "" || bytes.Contains(body, []byte("refresh_token")) {
		return errors.New("response is not the connection's credentials without refresh token: " + truncate(string(body), 200))
	}
	return nil
}

type listItem struct {
	ConnectionID string            `json:"connection_id"`
	Tags         map[string]string `json:"tags"`
	EndUser      *struct {
		Organization *struct {
			ID string `json:"id"`
		} `json:"organization"`
	} `json:"end_user"`
}

// checkPage makes sure that a list answer is a page of at most 100 connections that match.
func checkPage(match func(listItem) bool) func([]byte) error {
	return func(body []byte) error {
		var got struct {
			Connections []listItem `json:"connections"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			return fmt.Errorf("response is not JSON: %w", err)
		}
		if len(got.Connections) > 100 {
			return fmt.Errorf("a page of %d connections, limit 100", len(got.Connections))
		}
		for _, item := range got.Connections {
			if !match(item) {
				return errors.New("the page holds a connection the filter does not match: " + truncate(string(body), 200))
			}
		}
		return nil
	}
}

// pageRows counts the items of a list answer without decoding it: each has one connection_id.
func pageRows(body []byte) int {
	return bytes.Count(body, []byte(`"connection_id":`))
}

// runReads drives one read scenario from cfg.clients closed-loop clients, as runLoad drives
// imports: throughput and latencies of the requests completed in the measured window, errors
// over the whole run.
func runReads(ctx context.Context, cfg loadConfig, s readScenario) (readStats, error) {
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
	var cpu cpuWindow
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		cpu.sample(parent, cfg.serverPID, measureFrom, measureTo)
	}()

	readers := make([]reader, cfg.clients)
	var wg sync.WaitGroup
	for i := range readers {
		r := &readers[i]
		r.client, r.baseURL, r.scenario = client, cfg.baseURL, s
		r.rng = rand.New(rand.NewPCG(uint64(i)+1, uint64(start.UnixNano())))
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
		return readStats{}, fmt.Errorf("%s: interrupted: %w", s.name, err)
	}

	stats := readStats{Name: s.name, Request: s.request, Clients: cfg.clients}
	var latencies []time.Duration
	var rows int64
	errorKinds := map[string]int{}
	for i := range readers {
		r := &readers[i]
		latencies = append(latencies, r.latencies...)
		rows += r.rows
		stats.Errors += r.errors
		for k, n := range r.errorKinds {
			errorKinds[k] += n
		}
	}
	for k, n := range errorKinds {
		stats.ErrorKinds = append(stats.ErrorKinds, errorKind{Kind: k, Count: n})
	}
	slices.SortFunc(stats.ErrorKinds, func(a, b errorKind) int { return b.Count - a.Count })
	stats.Requests = int64(len(latencies))
	stats.RequestsPerSecond = float64(len(latencies)) / cfg.duration.Seconds()
	stats.Latency = summarize(latencies)
	if s.pages && len(latencies) > 0 {
		perPage := float64(rows) / float64(len(latencies))
		stats.RowsPerPage = &perPage
	}
	if cpu.ok {
		window := cpu.wall.Seconds()
		if cpu.hostTotal > 0 {
			stats.HostCPUBusyPercent = 100 * float64(cpu.hostBusy) / float64(cpu.hostTotal)
		}
		if stats.RequestsPerSecond > 0 {
			stats.ServerCPUPerRequest = 1e6 * cpu.server.Seconds() / window / stats.RequestsPerSecond
		}
	}
	return stats, nil
}

// reader is one closed-loop client of a read scenario.
type reader struct {
	client   *http.Client
	baseURL  string
	scenario readScenario
	rng      *rand.Rand

	errors     int64
	errorKinds map[string]int
	latencies  []time.Duration
	// rows counts the rows of the pages answered in the measured window.
	rows int64
}

func (r *reader) loop(ctx context.Context, measureFrom, measureTo time.Time) {
	r.errorKinds = map[string]int{}
	r.latencies = make([]time.Duration, 0, 1<<14)
	auth := "Bearer " + r.scenario.secret
	var buf bytes.Buffer
	checked := false
	for ctx.Err() == nil {
		if time.Now().After(measureTo) {
			return
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.baseURL+r.scenario.path(r.rng), nil)
		if err != nil {
			r.errors++
			r.errorKinds[err.Error()]++
			return
		}
		// The headers Nango's Node SDK sends on every call.
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Nango-Is-Sync", "false")
		req.Header.Set("Nango-Is-Script", "false")
		req.Header.Set("Nango-Is-Dry-Run", "false")
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
		if ctx.Err() != nil {
			return
		}
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
		if !checked {
			checked = true
			if err := r.scenario.check(buf.Bytes()); err != nil {
				r.errors++
				r.errorKinds[err.Error()]++
			}
		}
		if !t1.Before(measureFrom) && !t1.After(measureTo) {
			r.latencies = append(r.latencies, t1.Sub(t0))
			if r.scenario.pages {
				r.rows += int64(pageRows(buf.Bytes()))
			}
		}
	}
}
