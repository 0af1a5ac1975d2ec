package importer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/uuid"
)

// reader streams the inputs' records: it skips those a previous run finished, validates each
// against the embedded spec, reports invalid ones and queues valid ones. Before a record with
// a connection id of the tool's making is sent, the state file holds that id.
type reader struct {
	ctx       context.Context
	inputs    []*input
	validator Validator
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
		fs, _ = r.state.file(in.key, in.size, in.sum, false)
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
		body, line, err := src.next()
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
			r.results <- result{in: in, fs: fs, n: n, line: line, record: recErr.record, errBody: errorObject(recErr.code, recErr.message)}
			continue
		}
		value, invalid := r.validator.Validate(body)
		connID, _ := objectMember(value, "connection_id")
		if invalid != nil {
			r.results <- result{in: in, fs: fs, n: n, line: line, connID: connID, record: asRecord(body), errBody: invalid.Object()}
			continue
		}
		if r.dryRun {
			r.results <- result{in: in, n: n, line: line, connID: connID}
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
		r.batch = append(r.batch, job{in: in, fs: fs, n: n, line: line, connID: connID, body: body})
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
	for _, j := range r.batch {
		select {
		case r.jobs <- j:
		case <-r.ctx.Done():
			r.batch = r.batch[:0]
			return nil
		}
	}
	r.batch = r.batch[:0]
	return nil
}

// asRecord is body for the report: itself when it is JSON, else a JSON string of its text, which
// the importer reads back as the body once fixed.
func asRecord(body []byte) []byte {
	if json.Valid(body) {
		return body
	}
	data, _ := json.Marshal(string(body))
	return data
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
