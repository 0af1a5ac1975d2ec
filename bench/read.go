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
	"strconv"
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

// runReads drives one read scenario from cfg.clients closed-loop clients, as closedLoop
// measures them.
func runReads(ctx context.Context, cfg loadConfig, s readScenario) (readStats, error) {
	readers := make([]reader, cfg.clients)
	run, err := closedLoop(ctx, cfg, func(i int, rng *rand.Rand) loopClient {
		readers[i] = reader{baseURL: cfg.baseURL, scenario: s, rng: rng}
		return &readers[i]
	})
	if err != nil {
		return readStats{}, fmt.Errorf("%s: interrupted: %w", s.name, err)
	}

	stats := readStats{
		Name:              s.name,
		Request:           s.request,
		Clients:           cfg.clients,
		Requests:          run.measured,
		RequestsPerSecond: run.perSecond,
		Latency:           run.latency,
		Errors:            run.errors,
		ErrorKinds:        run.errorKinds,
	}
	if s.pages && run.measured > 0 {
		var rows int64
		for i := range readers {
			rows += readers[i].rows
		}
		perPage := float64(rows) / float64(run.measured)
		stats.RowsPerPage = &perPage
	}
	if cpu := run.cpu; cpu.ok {
		stats.HostCPUBusyPercent = cpu.hostBusyPercent()
		stats.ServerCPUPerRequest = cpu.serverMicrosPer(stats.RequestsPerSecond)
	}
	return stats, nil
}

// reader is one closed-loop client of a read scenario.
type reader struct {
	baseURL  string
	scenario readScenario
	rng      *rand.Rand

	// rows counts the rows of the pages answered in the measured window.
	rows int64
}

func (r *reader) request(ctx context.Context) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.baseURL+r.scenario.path(r.rng), nil)
	if err != nil {
		return nil, err
	}
	// The headers Nango's Node SDK sends on every call.
	req.Header.Set("Authorization", "Bearer "+r.scenario.secret)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Nango-Is-Sync", "false")
	req.Header.Set("Nango-Is-Script", "false")
	req.Header.Set("Nango-Is-Dry-Run", "false")
	return req, nil
}

func (r *reader) check(body []byte) error { return r.scenario.check(body) }

func (r *reader) answered(body []byte, measured bool) {
	if measured && r.scenario.pages {
		r.rows += int64(pageRows(body))
	}
}
