// Package importer is the bulk import of connections: it reads JSON Lines and CSV files,
// validates each record against the API's schema, sends the valid ones to a credport server
// (in batches, or one by one) and keeps what --resume needs and a report of the failures.
package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
)

const (
	// DefaultBatchSize is the records per request to POST /connections/batch.
	DefaultBatchSize = 200
	// MaxBatchSize is the most items POST /connections/batch takes.
	MaxBatchSize = 1000
	// DefaultMaxUnreachable is how long the server may fail to answer before the run stops.
	DefaultMaxUnreachable = 30 * time.Second
	// shownFailures is how many failures a run prints; the report holds them all.
	shownFailures = 10
)

// Validator checks a request body of POST /connections offline, as the server would: it
// returns the parsed body (objects as map[string]any) whenever it is JSON, and the error
// the server would answer when it would refuse the body. contract.BodyValidator is one.
type Validator interface {
	Validate(body []byte) (value any, problem *contract.Error)
}

// Options say what to import, where to, and how.
type Options struct {
	// Files are the inputs; "-" is Stdin.
	Files []string
	// Format is "jsonl", "csv" or "" (from the extension, else the first non-blank character).
	Format string
	// URL is the server's base URL and Key an API key with environment:connections:create.
	URL, Key string
	// Concurrency is the requests in flight; BatchSize the records per request (1: POST
	// /connections per record); MaxRetries the retries of a record that may succeed later.
	Concurrency, BatchSize, MaxRetries int
	// MaxUnreachable is how long the server may go without answering before the run stops.
	MaxUnreachable time.Duration
	// Report is the file of failed records; State the file Resume reads.
	Report, State string
	// Resume skips the records a previous run finished and appends to the report.
	Resume bool
	// DryRun validates every record and sends nothing.
	DryRun bool
	// NoWebhooks asks the server to send no creation or override webhook for the run's imports.
	NoWebhooks bool
	// Validator checks each record before it is sent.
	Validator Validator
	Stdin     io.Reader
	// Stderr receives progress and failures: a bar when Terminal is set, else a line every
	// ProgressEvery.
	Stderr        io.Writer
	Terminal      bool
	ProgressEvery time.Duration
	// Clock is the real clock when nil.
	Clock Clock
}

// Summary is what a run did.
type Summary struct {
	DryRun                                   bool
	Created, Updated, Failed, Valid, Skipped int
	Elapsed                                  time.Duration
}

func (s Summary) String() string {
	if s.DryRun {
		return fmt.Sprintf("valid %d, invalid %d, elapsed %s", s.Valid, s.Failed, s.Elapsed.Round(time.Millisecond))
	}
	rate := 0.0
	if secs := s.Elapsed.Seconds(); secs > 0 {
		rate = float64(s.Created+s.Updated+s.Failed) / secs
	}
	var b strings.Builder
	fmt.Fprintf(&b, "created %d, updated %d, failed %d", s.Created, s.Updated, s.Failed)
	if s.Skipped > 0 {
		fmt.Fprintf(&b, ", skipped %d (finished earlier)", s.Skipped)
	}
	fmt.Fprintf(&b, ", elapsed %s, %.0f records/s", s.Elapsed.Round(time.Millisecond), rate)
	return b.String()
}

func (o *Options) check() error {
	o.Format = strings.ToLower(o.Format)
	switch {
	case len(o.Files) == 0:
		return usageError("name at least one file, or - for standard input")
	case o.Format != "" && o.Format != formatJSONL && o.Format != formatCSV:
		return usageError("--format %q: want jsonl or csv", o.Format)
	case o.Concurrency < 1:
		return usageError("--concurrency must be at least 1")
	case o.BatchSize < 1 || o.BatchSize > MaxBatchSize:
		return usageError("--batch-size must be 1 to %d", MaxBatchSize)
	case o.MaxRetries < 0:
		return usageError("--max-retries must not be negative")
	case o.MaxUnreachable < 0:
		return usageError("--max-unreachable must not be negative")
	case o.Validator == nil:
		return usageError("no validator")
	case o.DryRun && o.Resume:
		return usageError("--dry-run and --resume do not go together")
	case o.DryRun:
		return nil
	case o.Resume && containsStdin(o.Files):
		return usageError("--resume does not go with standard input (-): a stream cannot be shown to be the one a previous run read; save it to a file and import the file")
	case strings.TrimSpace(o.URL) == "":
		return usageError("--url is required")
	case strings.TrimSpace(o.Key) == "":
		return usageError("an API key is required: set CREDPORT_API_KEY (or --key)")
	case !strings.HasPrefix(o.URL, "http://") && !strings.HasPrefix(o.URL, "https://"):
		return usageError("--url %q: want http:// or https://", o.URL)
	}
	return nil
}

func containsStdin(files []string) bool {
	for _, f := range files {
		if f == "-" {
			return true
		}
	}
	return false
}

// job is one valid record on its way to the server.
type job struct {
	in     *input
	fs     *fileState
	n      int // the record's number in its input, for the state
	line   int // its physical line, for people
	connID string
	body   []byte
}

// result is what became of one record.
type result struct {
	in     *input
	fs     *fileState
	n      int
	line   int
	connID string
	// record is the record as read (with the connection id the tool gave it), for the report.
	record      []byte
	status      int
	errBody     *gen.ErrorObject
	sent        bool
	created     bool
	interrupted bool
	unreachable bool
}

// Run imports the records of opts.Files. Its error is of one of the kinds ErrUsage, ErrFailed,
// ErrInterrupted or ErrStopped, or another when the state or the report cannot be written.
func Run(ctx context.Context, opts Options) (Summary, error) {
	sum := Summary{DryRun: opts.DryRun}
	if err := opts.check(); err != nil {
		return sum, err
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 5 * time.Second
	}
	inputs, err := openInputs(opts.Files, opts.Format, opts.Stdin)
	if err != nil {
		return sum, err
	}
	types, err := newCredentialTypes()
	if err != nil {
		return sum, err
	}
	var state *importState
	if !opts.DryRun {
		if state, err = loadState(opts.State); err != nil {
			if opts.Resume {
				return sum, withKind(ErrUsage, err)
			}
			state = &importState{path: opts.State, Files: map[string]*fileState{}}
		}
		for _, in := range inputs {
			if _, reset := state.file(in.key, in.size, in.sum, !opts.Resume); reset {
				fmt.Fprintf(opts.Stderr, "%s: its content changed since the saved state; importing it from the start\n", in.name)
			}
		}
		if err := state.save(); err != nil {
			return sum, withKind(ErrUsage, err)
		}
	}
	report, err := openReport(opts.Report, opts.Resume)
	if err != nil {
		return sum, withKind(ErrUsage, err)
	}

	var total int64
	for _, in := range inputs {
		if in.total < 0 {
			total = -1
			break
		}
		total += in.total
	}
	prog := newProgress(opts.Stderr, total, opts.Terminal && !opts.DryRun, opts.ProgressEvery)

	var snd *sender
	if !opts.DryRun {
		snd, err = newSender(strings.TrimRight(opts.URL, "/"), opts.Key, opts.Concurrency, opts.MaxRetries)
		if snd != nil && opts.NoWebhooks {
			yes := gen.StringBool("true")
			snd.noWebhooks = &yes
		}
		if err != nil {
			return sum, withKind(ErrUsage, err)
		}
		snd.clock, snd.maxUnreachable = opts.Clock, opts.MaxUnreachable
	}

	// runCtx ends with ctx, or when the run stops itself (stopErr).
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stopErr error
	stop := func(err error) {
		if stopErr == nil {
			stopErr = err
			cancel()
		}
	}

	jobs := make(chan job, opts.Concurrency*opts.BatchSize)
	results := make(chan result, opts.Concurrency*2)
	var readErr error
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(jobs)
		r := &reader{ctx: runCtx, inputs: inputs, validator: opts.Validator, types: types, state: state,
			dryRun: opts.DryRun, jobs: jobs, results: results, skipped: prog.skip}
		readErr = r.run()
	}()
	var workers sync.WaitGroup
	for range opts.Concurrency {
		workers.Go(func() { work(runCtx, snd, opts.BatchSize, jobs, results) })
	}
	go func() {
		<-readDone
		workers.Wait()
		close(results)
	}()

	stopSaving := make(chan struct{})
	savingDone := make(chan struct{})
	go func() {
		defer close(savingDone)
		if state == nil {
			return
		}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopSaving:
				return
			case <-t.C:
				_ = state.save()
			}
		}
	}()

	start := time.Now()
	var reportErr error
	var shown int
	for res := range results {
		switch {
		case res.interrupted:
			continue
		case res.unreachable:
			stop(fmt.Errorf("the server at %s has not answered for %s (%s)", opts.URL, opts.MaxUnreachable, describeError(res.errBody)))
			continue
		case res.status == 401 || res.status == 403:
			stop(fmt.Errorf("the server refused the API key: %d %s", res.status, describeError(res.errBody)))
			continue
		}
		ok := res.sent && res.status == 200
		if state != nil && (ok || recordRejected(res.status) || !res.sent) {
			state.finish(res.fs, res.n)
		}
		switch {
		case ok && res.created:
			prog.created++
		case ok:
			prog.updated++
		case !res.sent && opts.DryRun && res.errBody == nil:
			prog.valid++
		default:
			prog.failed++
			if err := report.write(res); err != nil && reportErr == nil {
				reportErr = err
			}
			if shown < shownFailures {
				shown++
				prog.printf("%s:%d: %s\n", res.in.name, res.line, describeError(res.errBody))
			}
		}
		prog.tick()
	}
	close(stopSaving)
	<-savingDone
	sum.Elapsed = time.Since(start)
	stopped := stopErr != nil || ctx.Err() != nil
	prog.finish(stopped)
	sum.Created, sum.Updated, sum.Failed, sum.Valid, sum.Skipped = prog.created, prog.updated, prog.failed, prog.valid, prog.skipped
	if prog.failed > shown {
		fmt.Fprintf(opts.Stderr, "... and %d more\n", prog.failed-shown)
	}
	if prog.failed > 0 {
		fmt.Fprintf(opts.Stderr, "report: %s\n", opts.Report)
	}

	var saveErr error
	if state != nil {
		saveErr = state.save()
	}
	closeErr := report.close()

	resume := fmt.Sprintf("state saved to %s; run the same command with --resume to go on", opts.State)
	switch {
	case readErr != nil:
		return sum, withKind(ErrUsage, readErr)
	case saveErr != nil:
		return sum, saveErr
	case reportErr != nil:
		return sum, reportErr
	case closeErr != nil:
		return sum, closeErr
	case stopErr != nil:
		return sum, withKind(ErrStopped, fmt.Errorf("stopped: %w; %s once that is fixed", stopErr, resume))
	case ctx.Err() != nil && !opts.DryRun:
		return sum, withKind(ErrInterrupted, fmt.Errorf("interrupted: %s", resume))
	case ctx.Err() != nil:
		return sum, withKind(ErrInterrupted, errors.New("interrupted"))
	case prog.failed > 0 && opts.DryRun:
		return sum, withKind(ErrFailed, fmt.Errorf("%d invalid records; see %s", prog.failed, opts.Report))
	case prog.failed > 0:
		return sum, withKind(ErrFailed, fmt.Errorf("%d records failed; see %s", prog.failed, opts.Report))
	}
	return sum, nil
}

// work sends the jobs in batches of up to size and passes on each record's result.
func work(ctx context.Context, snd *sender, size int, jobs <-chan job, results chan<- result) {
	bodies := make([][]byte, 0, size)
	for batch := range batches(jobs, size) {
		if ctx.Err() != nil {
			continue // left unfinished, for --resume
		}
		var outs []sendOutcome
		if size == 1 {
			outs = []sendOutcome{snd.send(ctx, batch[0].body)}
		} else {
			bodies = bodies[:0]
			for _, j := range batch {
				bodies = append(bodies, j.body)
			}
			outs = snd.sendBatch(ctx, bodies)
		}
		for k, j := range batch {
			out := outs[k]
			results <- result{in: j.in, fs: j.fs, n: j.n, line: j.line, connID: j.connID, record: j.body,
				status: out.status, errBody: out.errBody, sent: true, interrupted: out.interrupted,
				unreachable: out.unreachable, created: out.created}
		}
	}
}

// batches yields the jobs in groups of up to size, in order: each group as soon as it is full
// or the jobs end.
func batches(jobs <-chan job, size int) func(yield func([]job) bool) {
	return func(yield func([]job) bool) {
		for {
			first, ok := <-jobs
			if !ok {
				return
			}
			batch := make([]job, 1, size)
			batch[0] = first
			for len(batch) < size {
				j, ok := <-jobs
				if !ok {
					break
				}
				batch = append(batch, j)
			}
			if !yield(batch) {
				return
			}
		}
	}
}

// recordRejected is whether a status refuses the record itself, so that sending it again is
// pointless: a 4xx other than those about the key (401, 403) or the moment (408, 429).
func recordRejected(status int) bool {
	switch status {
	case 401, 403, 408, 429:
		return false
	}
	return status >= 400 && status < 500
}

// describeError is one line for an error object: its code, message and field errors.
func describeError(e *gen.ErrorObject) string {
	if e == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString(string(e.Code))
	if e.Message != nil && *e.Message != "" {
		b.WriteString(": " + *e.Message)
	}
	if e.Errors != nil {
		for _, d := range *e.Errors {
			fmt.Fprintf(&b, "; %s: %s", strings.Join(d.Path, "."), d.Message)
		}
	}
	return b.String()
}
