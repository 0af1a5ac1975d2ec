package main

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
)

// webhookStats is what the webhook receiver of a run with --webhooks got.
type webhookStats struct {
	// Received counts the webhooks the receiver answered by the time the server stopped; the
	// server delivers in the background, so it may trail the imports.
	Received int64 `json:"received"`
}

// webhookReceiver answers every webhook 204 at once and counts them: the cost measured is the
// server's (the outbox rows and the deliveries), not a receiver's.
type webhookReceiver struct {
	srv *httptest.Server
	n   atomic.Int64
}

func startWebhookReceiver() *webhookReceiver {
	r := &webhookReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r.n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	return r
}

func (r *webhookReceiver) url() string { return r.srv.URL + "/hook" }
