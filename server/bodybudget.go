package server

import (
	"context"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/credport/credport/contract"
)

// bodyBudget bounds the memory that request bodies hold while they are read, parsed and handled:
// a request takes its Content-Length (the body limit when it sends none) before its body is read,
// then contract.JSONValueBytes for each value of the body before it is decoded, and gives all back when
// its handler returns.
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

// bodyLease is one request's share of the budget. The items of a batch grow it concurrently.
type bodyLease struct {
	b  *bodyBudget
	mu sync.Mutex
	n  int64
}

// acquire takes req's share of the budget for its body's bytes, waiting at most b.wait; past
// the wait it answers 503 server_overloaded.
func (b *bodyBudget) acquire(req *http.Request) (*bodyLease, error) {
	// The body limit has refused a larger Content-Length already; a batch's may pass maxBody.
	n := req.ContentLength
	if n < 0 {
		n = b.maxBody
	}
	l := &bodyLease{b: b}
	if err := l.grow(req.Context(), n); err != nil {
		return nil, err
	}
	return l, nil
}

// grow adds n to the lease, waiting at most the budget's wait. A lease never holds more than the
// whole budget, so that a request larger than it may still run, alone.
func (l *bodyLease) grow(ctx context.Context, n int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	n = min(n, l.b.size-l.n)
	if n <= 0 {
		return nil
	}
	if !l.b.sem.TryAcquire(n) {
		ctx, cancel := context.WithTimeout(ctx, l.b.wait)
		defer cancel()
		if err := l.b.sem.Acquire(ctx, n); err != nil {
			return errOverloaded()
		}
	}
	l.n += n
	return nil
}

// release gives the whole lease back.
func (l *bodyLease) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 {
		l.b.sem.Release(l.n)
		l.n = 0
	}
}

// charge is the charge function of a body check: it grows the lease by contract.JSONValueBytes
// a value.
func (l *bodyLease) charge(ctx context.Context) contract.Charge {
	return func(values int) error {
		if err := l.grow(ctx, int64(values)*contract.JSONValueBytes); err != nil {
			return err
		}
		return nil
	}
}

type leaseKey struct{}

// withLease hands a request's lease on to its handler, which charges a batch's items to it.
func withLease(ctx context.Context, l *bodyLease) context.Context {
	return context.WithValue(ctx, leaseKey{}, l)
}

// chargeOf is the charge function of the request's lease; nil outside the validator.
func chargeOf(ctx context.Context) contract.Charge {
	l, ok := ctx.Value(leaseKey{}).(*bodyLease)
	if !ok {
		return nil
	}
	return l.charge(ctx)
}
