package importer

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"

	"github.com/credport/credport/gen"
)

// report is the report file: one JSON object per failed record.
type report struct {
	f *os.File
	w *bufio.Writer
}

// ReportLine is one line of the report.
type ReportLine struct {
	File         string  `json:"file"`
	Line         int     `json:"line"`
	ConnectionID *string `json:"connection_id"`
	// Status is the server's answer; 0 when none came or the record was refused offline.
	Status int             `json:"status"`
	Error  gen.ErrorObject `json:"error"`
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
	line := ReportLine{File: res.in.name, Line: res.n, Status: res.status}
	if res.errBody != nil {
		line.Error = *res.errBody
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
