package server

import (
	"context"
	"net/http"
	"time"

	"golang.org/x/sync/semaphore"
)

// bodyBudget bounds the request body bytes that are read, parsed and handled at once, and so
// the memory that parsing holds: a request takes its Content-Length (the body limit when it sends
// none) before its body is read and gives it back when its handler returns.
type bodyBudget struct {
	sem     *semaphore.Weighted
	size    int64
	maxBody int64
	// wait is how long a request may wait for its share before it is refused as overload.
	wait time.Duration
}

func newBodyBudget(size, maxBody int64, wait time.Duration) *bodyBudget {
	return &bodyBudget{sem: semaphore.NewWeighted(size), size: size, maxBody: maxBody, wait: wait}
}

// acquire takes req's share of the budget, waiting at most b.wait, and returns what gives it
// back; past the wait it answers 503 server_overloaded.
func (b *bodyBudget) acquire(req *http.Request) (release func(), err error) {
	n := req.ContentLength
	if n < 0 || n > b.maxBody {
		n = b.maxBody
	}
	// A body larger than the whole budget may still run, alone.
	n = min(n, b.size)
	if n <= 0 {
		return func() {}, nil
	}
	if !b.sem.TryAcquire(n) {
		ctx, cancel := context.WithTimeout(req.Context(), b.wait)
		defer cancel()
		if err := b.sem.Acquire(ctx, n); err != nil {
			return nil, errOverloaded()
		}
	}
	return func() { b.sem.Release(n) }, nil
}
