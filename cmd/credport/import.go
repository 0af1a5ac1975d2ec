package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/credport/credport/contract"
)

// importOptions are the flags of `credport import`.
type importOptions struct {
	url, key, format, report, state string
	concurrency, maxRetries         int
	batchSize                       int
	resume, dryRun                  bool
	// progressEvery is how often plain progress lines are written when stderr is no terminal.
	progressEvery time.Duration
}

func (a *app) importCommand() *cobra.Command {
	o := importOptions{progressEvery: 5 * time.Second}
	cmd := &cobra.Command{
		Use:   "import --url URL [flags] FILE...",
		Short: "Import connections in bulk from JSON Lines or CSV files (- reads standard input)",
		Long: `Import connections in bulk: the records of every FILE go to POST /connections/batch,
--batch-size at a time (1: one POST /connections per record; a server without the batch
endpoint gets one POST /connections per record too).

JSON Lines: each line is one request body. CSV: a header row naming provider_config_key,
connection_id, type, the credential fields, end_user.id|email|display_name, and
metadata.<key>, tags.<key> or connection_config.<key> columns (a metadata or connection_config
column may hold a JSON object). An empty cell leaves its field out, except BASIC's username
and password.

Exit status: 0 all imported (with --dry-run: all valid); 1 some records failed or were invalid
(see the report); 2 usage error or unreadable input; 130 interrupted, state saved.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("name at least one file, or - for standard input")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.bindEnv(cmd, "key"); err != nil {
				return withExitCode(exitUsage, err)
			}
			if err := o.check(); err != nil {
				return err
			}
			return a.runImport(cmd.Context(), o, args, cmd.InOrStdin())
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withExitCode(exitUsage, err) })
	f := cmd.Flags()
	f.StringVar(&o.url, "url", "", "the credport server's base URL, e.g. http://127.0.0.1:3003")
	f.StringVar(&o.key, "key", "", "API key with environment:connections:create (env CREDPORT_API_KEY)")
	f.StringVar(&o.format, "format", "", "jsonl or csv (default: from the extension, else the first non-blank character)")
	f.IntVar(&o.concurrency, "concurrency", 8, "requests in flight at once")
	f.IntVar(&o.batchSize, "batch-size", defaultBatchSize, "records per request to POST /connections/batch, at most 1000; 1 sends each alone to POST /connections")
	f.IntVar(&o.maxRetries, "max-retries", 5, "retries of a record after a network error, 429 or 5xx")
	f.StringVar(&o.report, "report", "credport-import-failed.jsonl", "where failed records are reported, one JSON object a line")
	f.StringVar(&o.state, "state", ".credport-import.state", "the state file that --resume reads")
	f.BoolVar(&o.resume, "resume", false, "skip the records a previous run finished; append to the report")
	f.BoolVar(&o.dryRun, "dry-run", false, "validate every record against the API's schema; send nothing")
	return cmd
}

func (o *importOptions) check() error {
	o.format = strings.ToLower(o.format)
	switch {
	case o.format != "" && o.format != formatJSONL && o.format != formatCSV:
		return usageError("--format %q: want jsonl or csv", o.format)
	case o.concurrency < 1:
		return usageError("--concurrency must be at least 1")
	case o.batchSize < 1 || o.batchSize > maxBatchSize:
		return usageError("--batch-size must be 1 to %d", maxBatchSize)
	case o.maxRetries < 0:
		return usageError("--max-retries must not be negative")
	case o.dryRun && o.resume:
		return usageError("--dry-run and --resume do not go together")
	case o.dryRun:
		return nil
	case strings.TrimSpace(o.url) == "":
		return usageError("--url is required")
	case strings.TrimSpace(o.key) == "":
		return usageError("an API key is required: set CREDPORT_API_KEY (or --key)")
	case !strings.HasPrefix(o.url, "http://") && !strings.HasPrefix(o.url, "https://"):
		return usageError("--url %q: want http:// or https://", o.url)
	}
	return nil
}

// job is one valid record on its way to the server.
type job struct {
	in     *input
	fs     *fileState
	n      int
	connID string
	body   []byte
}

// result is what became of one record.
type result struct {
	in          *input
	fs          *fileState
	n           int
	connID      string
	status      int
	errBody     json.RawMessage
	sent        bool
	created     bool
	interrupted bool
}

func (a *app) runImport(ctx context.Context, o importOptions, args []string, stdin io.Reader) error {
	inputs, err := openInputs(args, o.format, stdin)
	if err != nil {
		return err
	}
	validator, err := contract.NewImportValidator()
	if err != nil {
		return err
	}
	types, err := newCredentialTypes()
	if err != nil {
		return err
	}
	var state *importState
	if !o.dryRun {
		if state, err = loadState(o.state); err != nil {
			if !o.resume {
				state = &importState{path: o.state, Files: map[string]*fileState{}}
			} else {
				return withExitCode(exitUsage, err)
			}
		}
		for _, in := range inputs {
			if _, reset := state.file(in.key, in.size, !o.resume); reset {
				fmt.Fprintf(a.stderr, "%s: its size changed since the saved state; importing it from the start\n", in.name)
			}
		}
		if err := state.save(); err != nil {
			return withExitCode(exitUsage, err)
		}
	}
	report, err := openReport(o.report, o.resume)
	if err != nil {
		return withExitCode(exitUsage, err)
	}

	var total int64
	for _, in := range inputs {
		if in.total < 0 {
			total = -1
			break
		}
		total += in.total
	}
	prog := newProgress(a.stderr, total, o.dryRun, o.progressEvery)

	var snd *sender
	if !o.dryRun {
		if snd, err = newSender(strings.TrimRight(o.url, "/"), o.key, o.concurrency, o.maxRetries); err != nil {
			return withExitCode(exitUsage, err)
		}
	}

	jobs := make(chan job, o.concurrency*o.batchSize)
	results := make(chan result, o.concurrency*2)
	var readErr error
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(jobs)
		r := &reader{ctx: ctx, inputs: inputs, validator: validator, types: types, state: state,
			dryRun: o.dryRun, jobs: jobs, results: results, skipped: prog.skip}
		readErr = r.run()
	}()
	var workers sync.WaitGroup
	for range o.concurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			bodies := make([][]byte, 0, o.batchSize)
			for batch := range batches(jobs, o.batchSize) {
				if ctx.Err() != nil {
					continue // left unfinished, for --resume
				}
				var outs []sendOutcome
				if o.batchSize == 1 {
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
					results <- result{in: j.in, fs: j.fs, n: j.n, connID: j.connID, status: out.status,
						errBody: out.errBody, sent: true, interrupted: out.interrupted, created: out.created}
				}
			}
		}()
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
	for res := range results {
		if res.interrupted {
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
		case !res.sent && o.dryRun && res.errBody == nil:
			prog.valid++
		default:
			prog.failed++
			if err := report.write(res); err != nil && reportErr == nil {
				reportErr = err
			}
			if o.dryRun {
				prog.printf("%s:%d: %s\n", res.in.name, res.n, describeError(res.errBody))
			}
		}
		prog.tick()
	}
	close(stopSaving)
	<-savingDone
	elapsed := time.Since(start)
	prog.finish()

	var saveErr error
	if state != nil {
		saveErr = state.save()
	}
	closeErr := report.close()
	a.printSummary(prog, o.dryRun, elapsed)

	switch {
	case readErr != nil:
		return withExitCode(exitUsage, readErr)
	case saveErr != nil:
		return saveErr
	case reportErr != nil:
		return reportErr
	case closeErr != nil:
		return closeErr
	case ctx.Err() != nil && !o.dryRun:
		return withExitCode(exitInterrupted, fmt.Errorf("interrupted: state saved to %s; run the same command with --resume to go on", o.state))
	case ctx.Err() != nil:
		return withExitCode(exitInterrupted, errors.New("interrupted"))
	case prog.failed > 0 && o.dryRun:
		return fmt.Errorf("%d invalid records; see %s", prog.failed, o.report)
	case prog.failed > 0:
		return fmt.Errorf("%d records failed; see %s", prog.failed, o.report)
	}
	return nil
}

const (
	defaultBatchSize = 200
	maxBatchSize     = 1000 // the most items POST /connections/batch takes
)

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

func (a *app) printSummary(p *progress, dryRun bool, elapsed time.Duration) {
	secs := elapsed.Seconds()
	if dryRun {
		fmt.Fprintf(a.stdout, "valid %d, invalid %d, elapsed %s\n", p.valid, p.failed, elapsed.Round(time.Millisecond))
		return
	}
	rate := 0.0
	if secs > 0 {
		rate = float64(p.created+p.updated+p.failed) / secs
	}
	fmt.Fprintf(a.stdout, "created %d, updated %d, failed %d", p.created, p.updated, p.failed)
	if p.skipped > 0 {
		fmt.Fprintf(a.stdout, ", skipped %d (finished earlier)", p.skipped)
	}
	fmt.Fprintf(a.stdout, ", elapsed %s, %.0f records/s\n", elapsed.Round(time.Millisecond), rate)
}

// describeError is one line for an error object: its code, message and field errors.
func describeError(raw json.RawMessage) string {
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Errors  []struct {
			Message string   `json:"message"`
			Path    []string `json:"path"`
		} `json:"errors"`
	}
	if json.Unmarshal(raw, &e) != nil {
		return string(raw)
	}
	var b strings.Builder
	b.WriteString(e.Code)
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	for _, d := range e.Errors {
		fmt.Fprintf(&b, "; %s: %s", strings.Join(d.Path, "."), d.Message)
	}
	return b.String()
}

// reader streams the inputs' records: it skips those a previous run finished, validates each
// against the embedded spec, reports invalid ones and queues valid ones. Before a record with
// a connection id of the tool's making is sent, the state file holds that id.
type reader struct {
	ctx       context.Context
	inputs    []*input
	validator *contract.BodyValidator
	types     credentialTypes
	state     *importState
	dryRun    bool
	jobs      chan<- job
	results   chan<- result
	skipped   func()
	batch     []job
	assigned  bool
}

const readBatch = 256

func (r *reader) run() error {
	for _, in := range r.inputs {
		if err := r.readInput(in); err != nil {
			return err
		}
		if r.ctx.Err() != nil {
			break
		}
	}
	return r.flush()
}

func (r *reader) readInput(in *input) error {
	rc, err := in.open()
	if err != nil {
		return err
	}
	defer rc.Close()
	var fs *fileState
	if r.state != nil {
		fs, _ = r.state.file(in.key, in.size, false)
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	var src recordSource
	if in.format == formatCSV {
		cs, err := newCSVSource(br, r.types)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", in.name, err)
		}
		src = cs
	} else {
		src = &jsonlSource{r: br}
	}
	for n := 1; r.ctx.Err() == nil; n++ {
		body, err := src.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		var recErr *recordErr
		if err != nil && !errors.As(err, &recErr) {
			return fmt.Errorf("%s: %w", in.name, err)
		}
		if fs != nil && r.state.finished(fs, n) {
			r.skipped()
			continue
		}
		if recErr != nil {
			r.results <- result{in: in, fs: fs, n: n, errBody: errorObject(recErr.code, recErr.message)}
			continue
		}
		value, invalid := r.validator.Validate(body)
		connID, _ := objectMember(value, "connection_id")
		if invalid != nil {
			r.results <- result{in: in, fs: fs, n: n, connID: connID, status: 0, errBody: apiErrorObject(invalid)}
			continue
		}
		if r.dryRun {
			r.results <- result{in: in, n: n, connID: connID}
			continue
		}
		if _, present := value.(map[string]any)["connection_id"]; !present {
			connID = r.state.assignedID(fs, n)
			if connID == "" {
				connID = uuid.NewString()
				r.state.assign(fs, n, connID)
				r.assigned = true
			}
			body = withConnectionID(body, connID)
		}
		r.batch = append(r.batch, job{in: in, fs: fs, n: n, connID: connID, body: body})
		if len(r.batch) >= readBatch {
			if err := r.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush saves the state when it holds new ids, then queues the batch.
func (r *reader) flush() error {
	if r.assigned {
		if err := r.state.save(); err != nil {
			return err
		}
		r.assigned = false
	}
	for i, j := range r.batch {
		select {
		case r.jobs <- j:
		case <-r.ctx.Done():
			r.batch = r.batch[:0]
			_ = i
			return nil
		}
	}
	r.batch = r.batch[:0]
	return nil
}

func objectMember(value any, name string) (string, bool) {
	obj, ok := value.(map[string]any)
	if !ok {
		return "", false
	}
	s, ok := obj[name].(string)
	return s, ok
}

// withConnectionID adds a connection_id member to a JSON object, keeping the rest as written.
func withConnectionID(body []byte, id string) []byte {
	i := strings.IndexByte(string(body), '{')
	rest := strings.TrimLeft(string(body[i+1:]), " \t\r\n")
	member, _ := json.Marshal(id)
	out := make([]byte, 0, len(body)+len(member)+20)
	out = append(out, body[:i+1]...)
	out = append(out, `"connection_id":`...)
	out = append(out, member...)
	if !strings.HasPrefix(rest, "}") {
		out = append(out, ',')
	}
	return append(out, rest...)
}

func apiErrorObject(e *contract.Error) json.RawMessage {
	obj := struct {
		Code    string `json:"code"`
		Message string `json:"message,omitempty"`
		Errors  any    `json:"errors,omitempty"`
	}{Code: e.Code, Message: e.Message}
	if len(e.Details) > 0 {
		obj.Errors = e.Details
	}
	data, _ := json.Marshal(obj)
	return data
}

// importReport is the report file: one JSON object per failed record.
type importReport struct {
	f *os.File
	w *bufio.Writer
}

func openReport(path string, appendTo bool) (*importReport, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if appendTo {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, err
	}
	return &importReport{f: f, w: bufio.NewWriter(f)}, nil
}

type reportLine struct {
	File         string          `json:"file"`
	Line         int             `json:"line"`
	ConnectionID *string         `json:"connection_id"`
	Status       int             `json:"status"`
	Error        json.RawMessage `json:"error"`
}

func (r *importReport) write(res result) error {
	line := reportLine{File: res.in.name, Line: res.n, Status: res.status, Error: res.errBody}
	if res.connID != "" {
		line.ConnectionID = &res.connID
	}
	data, err := json.Marshal(line)
	if err != nil {
		return err
	}
	_, err = r.w.Write(append(data, '\n'))
	return err
}

func (r *importReport) close() error {
	return errors.Join(r.w.Flush(), r.f.Close())
}
