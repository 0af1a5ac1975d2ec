package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credport/credport/gen"
)

// sender posts bodies through the client generated from openapi.yaml, retrying what may
// succeed later: network errors, 429 (after its Retry-After) and 5xx.
type sender struct {
	client     *gen.Client
	maxRetries int
	// noWebhooks, when set, is sent as the no_webhooks parameter of every import.
	noWebhooks *gen.StringBool
	// single is set once the server has shown it has no batch endpoint.
	single     atomic.Bool
	backoff    time.Duration // first retry's ceiling
	maxBackoff time.Duration
	clock      Clock
	// maxUnreachable is how long the server may go without answering before every send gives up.
	maxUnreachable time.Duration
	mu             sync.Mutex
	// downSince is when the server last failed to answer after answering; zero while it answers.
	downSince time.Time
}

func newSender(url, key string, concurrency, maxRetries int) (*sender, error) {
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        concurrency,
		MaxIdleConnsPerHost: concurrency,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	client, err := gen.NewClient(url,
		gen.WithHTTPClient(&http.Client{Transport: transport, Timeout: 60 * time.Second}),
		gen.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Bearer "+key)
			return nil
		}))
	if err != nil {
		return nil, err
	}
	return &sender{client: client, maxRetries: maxRetries, backoff: 200 * time.Millisecond, maxBackoff: 10 * time.Second,
		clock: realClock{}, maxUnreachable: DefaultMaxUnreachable}, nil
}

// outcome is what became of one record.
type sendOutcome struct {
	status int // the last HTTP status; 0 when no answer came
	// created: imported, and the answer's updated_at is not later than its created_at.
	created bool
	// errBody is the server's error object, or one describing a network failure.
	errBody *gen.ErrorObject
	// interrupted: the run was stopped before the record got a final answer.
	interrupted bool
	// unreachable: the server has not answered for maxUnreachable; the record was given up.
	unreachable bool
}

// reached notes whether an attempt got an answer, and returns whether the server has now gone
// maxUnreachable without answering.
func (s *sender) reached(answered bool) (unreachable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if answered {
		s.downSince = time.Time{}
		return false
	}
	now := s.clock.Now()
	if s.downSince.IsZero() {
		s.downSince = now
	}
	return now.Sub(s.downSince) >= s.maxUnreachable
}

// send posts body until it gets a final answer, the retries run out or ctx ends. A request
// already under way when ctx ends is finished, not abandoned.
func (s *sender) send(ctx context.Context, body []byte) sendOutcome {
	reqCtx := context.WithoutCancel(ctx)
	for attempt := 0; ; attempt++ {
		out, retryAfter := s.attempt(reqCtx, body)
		if s.reached(out.status != 0) {
			out.unreachable = true
			return out
		}
		if out.status == http.StatusOK || !retryable(out.status) || attempt >= s.maxRetries {
			return out
		}
		wait := s.jitter(attempt)
		if retryAfter > wait {
			wait = retryAfter
		}
		select {
		case <-ctx.Done():
			out.interrupted = true
			return out
		case <-s.clock.After(wait):
		}
	}
}

// retryable is whether a status may change if the record is sent again: no answer, 429, 5xx.
func retryable(status int) bool {
	return status == 0 || status == http.StatusTooManyRequests || status >= 500
}

// jitter is "full jitter": uniform in [0, min(maxBackoff, backoff·2^attempt)).
func (s *sender) jitter(attempt int) time.Duration {
	ceiling := s.maxBackoff
	if attempt < 30 {
		ceiling = min(s.maxBackoff, s.backoff<<attempt)
	}
	return rand.N(ceiling) + 1
}

func (s *sender) attempt(ctx context.Context, body []byte) (sendOutcome, time.Duration) {
	resp, err := s.client.ImportConnectionWithBody(ctx, &gen.ImportConnectionParams{NoWebhooks: s.noWebhooks}, "application/json", bytes.NewReader(body))
	if err != nil {
		return sendOutcome{errBody: errorObject("network_error", err.Error())}, 0
	}
	data, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return sendOutcome{errBody: errorObject("network_error", "reading the response: "+err.Error())}, 0
	}
	out := sendOutcome{status: resp.StatusCode}
	if resp.StatusCode == http.StatusOK {
		var conn connectionTimes
		out.created = json.Unmarshal(data, &conn) == nil && conn.created()
		return out, 0
	}
	out.errBody = answerError(resp.StatusCode, data)
	return out, retryAfter(resp.Header.Get("Retry-After"))
}

// connectionTimes is what the tool reads of an imported connection: only what tells created
// from updated.
type connectionTimes struct {
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (c connectionTimes) created() bool { return !c.UpdatedAt.After(c.CreatedAt) }

// answerError is the error object of an error answer, or one made of the status and the start
// of the body when the answer is not the API's.
func answerError(status int, data []byte) *gen.ErrorObject {
	var envelope gen.StdError
	if json.Unmarshal(data, &envelope) == nil && envelope.Error.Code != "" {
		return &envelope.Error
	}
	msg := string(data)
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return errorObject("http_"+strconv.Itoa(status), msg)
}

// retryAfter reads a Retry-After header: delay seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

// errorObject is an error of the importer's own, in the report's shape. Its codes (network_error,
// http_503...) are the importer's, not among the API's ErrorCode values.
func errorObject(code, message string) *gen.ErrorObject {
	return &gen.ErrorObject{Code: gen.ErrorCode(code), Message: &message}
}
