package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/credport/credport/gen"
)

// sendBatch imports bodies through POST /connections/batch and returns one outcome per body,
// in order. Each record keeps the guarantees of send: only the records whose result may change
// (no answer, 429, 5xx) are sent again, each at most maxRetries times; a batch already under way
// when ctx ends is finished, not abandoned. Against a server without the batch endpoint, it and
// every later call send one request per record.
func (s *sender) sendBatch(ctx context.Context, bodies [][]byte) []sendOutcome {
	outs := make([]sendOutcome, len(bodies))
	pending := make([]int, len(bodies))
	for i := range pending {
		pending[i] = i
	}
	s.sendSet(ctx, bodies, pending, outs)
	return outs
}

// sendSet is sendBatch for the bodies at the indexes of pending, writing their outcomes to outs.
func (s *sender) sendSet(ctx context.Context, bodies [][]byte, pending []int, outs []sendOutcome) {
	reqCtx := context.WithoutCancel(ctx)
	for attempt := 0; ; attempt++ {
		if s.single.Load() {
			for _, i := range pending {
				outs[i] = s.send(ctx, bodies[i])
			}
			return
		}
		status, wait := s.attemptBatch(reqCtx, bodies, pending, outs)
		if s.reached(status != 0) {
			for _, i := range pending {
				outs[i].unreachable = true
			}
			return
		}
		switch {
		case status == http.StatusNotFound || status == http.StatusMethodNotAllowed:
			// No batch endpoint: a per-item 404 would have come inside a 200.
			s.single.Store(true)
			attempt--
			continue
		case status == http.StatusRequestEntityTooLarge && len(pending) > 1:
			// Over the server's batch body limit: halves, each with the retries left.
			half := len(pending) / 2
			s.sendSet(ctx, bodies, pending[:half], outs)
			s.sendSet(ctx, bodies, pending[half:], outs)
			return
		}
		var again []int
		for _, i := range pending {
			if outs[i].status != http.StatusOK && retryable(outs[i].status) {
				again = append(again, i)
			}
		}
		if len(again) == 0 || attempt >= s.maxRetries {
			return
		}
		pending = again
		select {
		case <-ctx.Done():
			for _, i := range pending {
				outs[i].interrupted = true
			}
			return
		case <-s.clock.After(max(wait, s.jitter(attempt))):
		}
	}
}

// batchResult is what the tool reads of one result of POST /connections/batch.
type batchResult struct {
	Status     int              `json:"status"`
	Connection connectionTimes  `json:"connection"`
	Error      *gen.ErrorObject `json:"error"`
}

// attemptBatch posts the bodies at the indexes of pending as one batch and writes each one's
// outcome. It returns the answer's status (0 when none came) and its Retry-After.
func (s *sender) attemptBatch(ctx context.Context, bodies [][]byte, pending []int, outs []sendOutcome) (int, time.Duration) {
	size := len(`{"connections":[]}`) + len(pending)
	for _, i := range pending {
		size += len(bodies[i])
	}
	envelope := make([]byte, 0, size)
	envelope = append(envelope, `{"connections":[`...)
	for k, i := range pending {
		if k > 0 {
			envelope = append(envelope, ',')
		}
		envelope = append(envelope, bodies[i]...)
	}
	envelope = append(envelope, "]}"...)

	all := func(out sendOutcome) {
		for _, i := range pending {
			outs[i] = out
		}
	}
	resp, err := s.client.ImportConnectionBatchWithBody(ctx, &gen.ImportConnectionBatchParams{NoWebhooks: s.noWebhooks}, "application/json", bytes.NewReader(envelope))
	if err != nil {
		all(sendOutcome{errBody: errorObject("network_error", err.Error())})
		return 0, 0
	}
	data, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		all(sendOutcome{errBody: errorObject("network_error", "reading the response: "+err.Error())})
		return 0, 0
	}
	if resp.StatusCode != http.StatusOK {
		all(sendOutcome{status: resp.StatusCode, errBody: answerError(resp.StatusCode, data)})
		return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After"))
	}
	var answer struct {
		Results []batchResult `json:"results"`
	}
	if err := json.Unmarshal(data, &answer); err != nil || len(answer.Results) != len(pending) {
		// Not the answer of a batch: nothing tells which records were imported, and sending
		// them again is harmless, since each has its connection id.
		all(sendOutcome{errBody: errorObject("bad_answer", "the batch answer does not have one result per record")})
		return http.StatusOK, 0 // an answer all the same: the server is there
	}
	for k, i := range pending {
		r := answer.Results[k]
		out := sendOutcome{status: r.Status, errBody: r.Error}
		if r.Status == http.StatusOK {
			out.created, out.errBody = r.Connection.created(), nil
		}
		outs[i] = out
	}
	return http.StatusOK, 0
}
