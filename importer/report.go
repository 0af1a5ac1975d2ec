package importer

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"

	"github.com/credport/credport/gen"
)

// report is the report file: one JSON object per failed record. Each holds the record itself,
// so that the report, once its records are fixed, is an input of its own.
type report struct {
	f *os.File
	w *bufio.Writer
}

// ReportLine is one line of the report.
type ReportLine struct {
	// File and Line are where the record is: the input as named, and its physical line (1-based).
	File         string  `json:"file"`
	Line         int     `json:"line"`
	ConnectionID *string `json:"connection_id"`
	// Status is the server's answer; 0 when none came or the record was refused offline.
	Status int             `json:"status"`
	Error  gen.ErrorObject `json:"error"`
	// Record is the request body as read, with the connection id the importer gave it; a JSON
	// string when the line was not JSON; null when a CSV row could not be read.
	Record json.RawMessage `json:"record"`
}

func openReport(path string, appendTo bool) (*report, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if appendTo {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, err
	}
	return &report{f: f, w: bufio.NewWriter(f)}, nil
}

func (r *report) write(res result) error {
	line := ReportLine{File: res.in.name, Line: res.line, Status: res.status, Record: res.record}
	if res.errBody != nil {
		line.Error = *res.errBody
	}
	if len(line.Record) == 0 {
		line.Record = json.RawMessage("null")
	}
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

func (r *report) close() error {
	return errors.Join(r.w.Flush(), r.f.Close())
}

// reportRecord is the record of a report line, when line is one: an object with a record and an
// error member. A record that is a JSON string is the text of the body.
func reportRecord(line []byte) ([]byte, bool) {
	var l struct {
		Record json.RawMessage `json:"record"`
		Error  json.RawMessage `json:"error"`
	}
	if json.Unmarshal(line, &l) != nil || len(l.Record) == 0 || len(l.Error) == 0 {
		return nil, false
	}
	var text string
	if json.Unmarshal(l.Record, &text) == nil {
		return []byte(text), true
	}
	return l.Record, true
}
