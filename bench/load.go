package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
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

// runLoad drives POST /connections from cfg.clients closed-loop clients, as closedLoop measures
// them. It also returns ids of connections it imported, for the reads.
func runLoad(ctx context.Context, cfg loadConfig) (loadStats, []string, error) {
	expiresAt := time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	importers := make([]importer, cfg.clients)
	run, err := closedLoop(ctx, cfg, func(i int, rng *rand.Rand) loopClient {
		importers[i] = importer{cfg: cfg, index: i, expiresAt: expiresAt, rng: rng}
		return &importers[i]
	})
	if err != nil {
		return loadStats{}, nil, fmt.Errorf("load interrupted: %w", err)
	}

	stats := loadStats{
		Imported:         run.measured,
		ImportsPerSecond: run.perSecond,
		Latency:          run.latency,
		Errors:           run.errors,
		ErrorKinds:       run.errorKinds,
		Sent:             run.sent,
		Succeeded:        run.succeeded,
	}
	var ids []string
	for i := range importers {
		ids = append(ids, importers[i].imported...)
		stats.BodyBytes = max(stats.BodyBytes, importers[i].bodyBytes)
	}
	if cpu := run.cpu; cpu.ok {
		stats.ServerCPUPercent = cpu.percent(cpu.server)
		stats.ClientCPUPercent = cpu.percent(cpu.client)
		stats.HostCPUBusyPercent = cpu.hostBusyPercent()
		stats.ServerCPUPerImport = cpu.serverMicrosPer(stats.ImportsPerSecond)
	}
	return stats, ids, nil
}

// importer is one closed-loop client of the imports: each request imports a new connection.
type importer struct {
	cfg       loadConfig
	index     int
	expiresAt string
	rng       *rand.Rand

	seq int
	// connectionID is the connection of the request in flight.
	connectionID string
	bodyBytes    int
	// imported holds the first readIDsPerClient connection ids this client imported.
	imported []string
}

func (w *importer) request(ctx context.Context) (*http.Request, error) {
	w.seq++
	// A random part first spreads the imports over the unique index as an import of arbitrary
	// ids would, and as pgbench's random ids do; the client and sequence number keep every id
	// distinct.
	w.connectionID = connectionIDPrefix + strconv.FormatUint(1+w.rng.Uint64N(1_000_000_000_000), 10) +
		"-" + strconv.Itoa(w.index) + "-" + strconv.Itoa(w.seq)
	body := w.body(w.connectionID)
	w.bodyBytes = max(w.bodyBytes, len(body))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.baseURL+"/connections", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+w.cfg.secret)
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

func (w *importer) answered(_ []byte, _ bool) {
	if len(w.imported) < readIDsPerClient {
		w.imported = append(w.imported, w.connectionID)
	}
}

// check makes sure that a 200 is the connection that was sent.
func (w *importer) check(body []byte) error {
	var got struct {
		ConnectionID string `json:"connection_id"`
		Credentials  struct {
			RefreshToken string `json:"refresh_token"`
		} `json:"credentials"`
		Tags map[string]string `json:"tags"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		return fmt.Errorf("response is not JSON: %w", err)
	}
	if got.ConnectionID != w.connectionID || got.Credentials.RefreshToken == "" || len(got.Tags) != 2 {
		return fmt.Errorf("response is not the imported connection: %s", truncate(string(body), 200))
	}
	return nil
}

// body is an import as a migration from another credential store would send it: OAuth 2 tokens
// with a refresh token and an expiry, some metadata and two tags; about 600 bytes.
func (w *importer) body(connectionID string) []byte {
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

func (w *importer) appendToken(b []byte, n int) []byte {
	for range n {
		b = append(b, tokenAlphabet[w.rng.IntN(len(tokenAlphabet))])
	}
	return b
}
