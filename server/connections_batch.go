package server

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/labstack/echo/v4"
	"github.com/oapi-codegen/runtime"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
	"github.com/credport/credport/store"
)

const (
	// batchWorkers bounds the items of one batch in flight at once; the store may commit those
	// that arrive together in one transaction.
	batchWorkers = 16
)

// ImportConnectionBatch applies each item as POST /connections would apply it alone, and
// answers one result per item, in request order.
func (s *Server) ImportConnectionBatch(ctx context.Context, req gen.ImportConnectionBatchRequestObject) (gen.ImportConnectionBatchResponseObject, error) {
	key, ok := principal(ctx)
	if !ok {
		return nil, errors.New("import connection batch: no authenticated key")
	}
	items := req.Body.Connections
	bodies := make([]*gen.ImportConnectionRequest, len(items))
	creds := make([]map[string]any, len(items))
	types := make([]string, len(items))
	answers := make([]*imported, len(items))
	errs := make([]error, len(items))

	// Each item is validated as the body of POST /connections, with paths relative to it.
	forEach(len(items), func(i int) { bodies[i], creds[i], types[i], errs[i] = s.checkBatchItem(ctx, items[i]) })

	// Items that name the same connection form a chain, applied in request order; an item
	// without connection_id gets a new one and so a chain of its own.
	type connKey struct{ providerConfigKey, connectionID string }
	var chains [][]int
	chainOf := map[connKey]int{}
	for i, body := range bodies {
		if body == nil {
			continue
		}
		if body.ConnectionId != nil {
			k := connKey{body.ProviderConfigKey, *body.ConnectionId}
			if c, ok := chainOf[k]; ok {
				chains[c] = append(chains[c], i)
				continue
			}
			chainOf[k] = len(chains)
		}
		chains = append(chains, []int{i})
	}
	forEach(len(chains), func(c int) {
		for _, i := range chains[c] {
			answers[i], errs[i] = s.importBatchItem(ctx, key, bodies[i], creds[i], s.rules.Bool(req.Params.NoWebhooks))
		}
	})

	answer := batchAnswer{Results: make([]batchResult, len(items))}
	n := notes(ctx)
	n.batchImports = make([]importNote, len(items))
	for i := range items {
		note := &n.batchImports[i]
		note.credentialType = cmp.Or(types[i], "unknown")
		if errs[i] == nil {
			answer.Results[i] = batchResult{Status: http.StatusOK, Connection: &answers[i].connection}
			note.outcome = "updated"
			if answers[i].created {
				note.outcome = "created"
			}
			continue
		}
		apiErr := toAPIError(errs[i])
		if apiErr.Status < 500 {
			note.outcome = "rejected"
		} else if untimed(ctx).Err() == nil {
			s.log.ErrorContext(ctx, "batch item failed", "item", i, "status", apiErr.Status, "error", errs[i])
		}
		obj := errorObject(apiErr)
		answer.Results[i] = batchResult{Status: apiErr.Status, Error: &obj}
	}
	return answer, nil
}

// batchAnswer is the 200 of POST /connections/batch, ImportConnectionBatchResults. It is encoded
// in one pass: the generated union type would encode each result twice.
type batchAnswer struct {
	Results []batchResult `json:"results"`
}

// batchResult is an ImportConnectionBatchImported or an ImportConnectionBatchFailed.
type batchResult struct {
	Status     int                 `json:"status"`
	Connection *gen.ConnectionFull `json:"connection,omitempty"`
	Error      *gen.ErrorObject    `json:"error,omitempty"`
}

func (a batchAnswer) VisitImportConnectionBatchResponse(w http.ResponseWriter) error {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(a); err != nil {
		return fmt.Errorf("encode batch answer: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, err := buf.WriteTo(w)
	return err
}

// checkBatchItem is what POST /connections does with a body before its handler runs: the
// size limit, then the JSON and schema checks of the validator, then binding. It also returns
// the credentials as the validator decoded them, and the credentials type, for the metrics, when
// the item names a declared one. The item's values are charged to the request's share of the
// body bytes in flight, as a body's are.
func (s *Server) checkBatchItem(ctx context.Context, raw json.RawMessage) (*gen.ImportConnectionRequest, map[string]any, string, error) {
	if int64(len(raw)) > s.maxBodyBytes {
		return nil, nil, "", echo.ErrStatusRequestEntityTooLarge
	}
	value, err := s.validate.CheckJSON(s.importSchema, true, raw, chargeOf(ctx))
	typ := ""
	if value != nil {
		typ = contract.DiscriminatorValue(s.importSchema, value)
	}
	if err != nil {
		return nil, nil, typ, err
	}
	// Bound as the generated handler binds a body: the validated value, else the JSON itself.
	var body gen.ImportConnectionRequest
	if runtime.BindJSONValue(value, &body) != nil {
		body = gen.ImportConnectionRequest{}
		if err := json.Unmarshal(raw, &body); err != nil {
			return nil, nil, typ, fmt.Errorf("%w: %w", errUnreadableBody(), err)
		}
		return &body, nil, typ, nil
	}
	return &body, credentialsOf(value), typ, nil
}

// importBatchItem imports one item with a deadline of its own, as if it were a request of its
// own: a batch may take longer than one request's database work, but no item may.
func (s *Server) importBatchItem(ctx context.Context, key store.APIKey, body *gen.ImportConnectionRequest, creds map[string]any, quiet bool) (*imported, error) {
	if err := untimed(ctx).Err(); err != nil {
		return nil, fmt.Errorf("import connection batch: %w", err)
	}
	itemCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.requestTimeout)
	defer cancel()
	stop := context.AfterFunc(untimed(ctx), cancel) // the client went away, or the server stops
	defer stop()
	return s.importOne(itemCtx, key, body, creds, quiet)
}

// forEach runs f for 0..n-1, at most batchWorkers at once.
func forEach(n int, f func(i int)) {
	workers := min(n, batchWorkers)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// untimedKey carries a request's context as it was before the request deadline was added.
type untimedKey struct{}

// untimed is the request's context without the deadline of its database work: it ends when
// the client goes away or the server stops.
func untimed(ctx context.Context) context.Context {
	if parent, ok := ctx.Value(untimedKey{}).(context.Context); ok {
		return parent
	}
	return ctx
}

// isBatch tells whether a request is routed to POST /connections/batch, whose body has a limit
// of its own.
func isBatch(c echo.Context) bool {
	return c.Request().Method == http.MethodPost && c.Path() == contract.BatchPath
}
