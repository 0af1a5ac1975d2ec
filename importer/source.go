package importer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/credport/credport/gen"
)

const (
	formatJSONL = "jsonl"
	formatCSV   = "csv"
)

// input is one file named on the command line, or standard input ("-").
type input struct {
	name   string // as given, for messages and the report
	key    string // its key in the state file: the absolute path, or "-"
	size   int64  // -1 for standard input
	sum    string // the SHA-256 of the file's content; "" for standard input
	format string
	total  int64 // records in the file, -1 when unknown (standard input)
	stdin  *bufio.Reader
}

// openInputs checks every input before anything is sent: it exists, it is readable, and its
// format is known (--format, else the extension, else the first non-blank character).
func openInputs(names []string, format string, stdin io.Reader) ([]*input, error) {
	var out []*input
	seen := map[string]bool{}
	for _, name := range names {
		in := &input{name: name, key: name, size: -1, total: -1, format: format}
		if name == "-" {
			if seen["-"] {
				return nil, usageError("standard input (-) named twice")
			}
			r, err := decompressed(bufio.NewReaderSize(stdin, 64<<10))
			if err != nil {
				return nil, usageError("standard input: %v", err)
			}
			in.stdin = r
			if in.format == "" {
				in.format = sniffFormat(in.stdin)
			}
		} else {
			abs, err := filepath.Abs(name)
			if err != nil {
				return nil, usageError("%s: %v", name, err)
			}
			in.key = abs
			fi, err := os.Stat(name)
			if err != nil {
				return nil, usageError("%v", err)
			}
			if !fi.Mode().IsRegular() {
				return nil, usageError("%s: not a regular file", name)
			}
			in.size = fi.Size()
			if err := in.inspect(); err != nil {
				return nil, err
			}
		}
		if seen[in.key] {
			return nil, usageError("%s named twice", name)
		}
		seen[in.key] = true
		out = append(out, in)
	}
	return out, nil
}

// inspect settles a file's format, checks that it can be read as such, counts its records and
// takes the fingerprint of its content.
func (in *input) inspect() error {
	rc, err := in.open()
	if err != nil {
		return err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 64<<10)
	if in.format == "" {
		switch strings.ToLower(filepath.Ext(strings.TrimSuffix(strings.ToLower(in.name), ".gz"))) {
		case ".jsonl", ".ndjson", ".json":
			in.format = formatJSONL
		case ".csv":
			in.format = formatCSV
		default:
			in.format = sniffFormat(br)
		}
	}
	if in.format == formatCSV {
		if _, err := readCSVHeader(csv.NewReader(br)); err != nil && !errors.Is(err, io.EOF) {
			return usageError("%s: %v", in.name, err)
		}
	}
	_ = rc.Close()

	f, err := os.Open(in.name)
	if err != nil {
		return usageError("%v", err)
	}
	defer f.Close()
	h := sha256.New()
	raw := io.TeeReader(f, h)
	content, err := decompressed(bufio.NewReaderSize(raw, 64<<10))
	if err != nil {
		return usageError("%s: %v", in.name, err)
	}
	n, err := countRecords(content)
	if err == nil {
		_, err = io.Copy(io.Discard, raw)
	}
	if err != nil {
		return usageError("%s: %v", in.name, err)
	}
	if in.format == formatCSV && n > 0 {
		n-- // the header
	}
	in.total = n
	in.sum = hex.EncodeToString(h.Sum(nil))
	return nil
}

// decompressed is r's content: r itself, or what it holds when it starts with gzip's magic bytes.
func decompressed(r *bufio.Reader) (*bufio.Reader, error) {
	magic, _ := r.Peek(2)
	if !bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		return r, nil
	}
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return bufio.NewReaderSize(gz, 64<<10), nil
}

// sniffFormat is JSON Lines when the first non-blank character is '{', else CSV.
func sniffFormat(r *bufio.Reader) string {
	for n := 512; ; n *= 2 {
		buf, err := r.Peek(n)
		if i := bytes.IndexFunc(buf, func(c rune) bool { return !strings.ContainsRune(" \t\r\n\ufeff", c) }); i >= 0 {
			if buf[i] == '{' {
				return formatJSONL
			}
			return formatCSV
		}
		if err != nil || n >= 1<<20 {
			return formatCSV
		}
	}
}

// countRecords counts the non-blank lines of r without holding more than a buffer of it.
func countRecords(r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	blank := true
	for {
		m, err := r.Read(buf)
		for _, c := range buf[:m] {
			switch c {
			case '\n':
				if !blank {
					n++
				}
				blank = true
			case ' ', '\t', '\r':
			default:
				blank = false
			}
		}
		if errors.Is(err, io.EOF) {
			if !blank {
				n++
			}
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// open returns the input's stream.
func (in *input) open() (io.ReadCloser, error) {
	if in.stdin != nil {
		return io.NopCloser(in.stdin), nil
	}
	f, err := os.Open(in.name)
	if err != nil {
		return nil, usageError("%v", err)
	}
	r, err := decompressed(bufio.NewReaderSize(f, 64<<10))
	if err != nil {
		_ = f.Close()
		return nil, usageError("%s: %v", in.name, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{r, f}, nil
}

// recordSource yields one input's records, in order, as request bodies.
type recordSource interface {
	// next returns the next record's body and the physical line it starts on (1-based), or a
	// problem that makes the record invalid (recordErr), or io.EOF after the last one. Any
	// other error ends the input.
	next() (body []byte, line int, err error)
}

// recordErr is a record that cannot become a request body; record is what could be read of it,
// as JSON, or nil.
type recordErr struct {
	code, message string
	record        []byte
}

func (e *recordErr) Error() string { return e.code + ": " + e.message }

// jsonlSource reads JSON Lines: each non-blank line is one body, sent as written. A line of a
// report (an object with record and error members) stands for its record.
type jsonlSource struct {
	r    *bufio.Reader
	line int
}

func (s *jsonlSource) next() ([]byte, int, error) {
	for {
		line, err := s.r.ReadBytes('\n')
		if len(line) == 0 && err != nil {
			return nil, 0, err
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, err
		}
		s.line++
		line = bytes.TrimSpace(bytes.TrimPrefix(line, []byte("\ufeff")))
		if len(line) > 0 {
			if bytes.Contains(line, []byte(`"record"`)) {
				if record, ok := reportRecord(line); ok {
					return record, s.line, nil
				}
			}
			return line, s.line, nil
		}
		if err != nil {
			return nil, 0, err
		}
	}
}

// csvSource maps CSV rows to bodies by their header (see csvColumns).
type csvSource struct {
	r     *csv.Reader
	cols  []string
	types credentialTypes
}

func newCSVSource(r io.Reader, types credentialTypes) (*csvSource, error) {
	cr := csv.NewReader(r)
	cols, err := readCSVHeader(cr)
	if err != nil {
		return nil, err
	}
	cr.FieldsPerRecord = len(cols)
	return &csvSource{r: cr, cols: cols, types: types}, nil
}

// readCSVHeader reads and checks the header row.
func readCSVHeader(r *csv.Reader) ([]string, error) {
	cols, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("neither JSON Lines nor CSV: %w", err)
	}
	if len(cols) > 0 {
		cols[0] = strings.TrimPrefix(cols[0], "\ufeff")
	}
	for i := range cols {
		cols[i] = strings.TrimSpace(cols[i])
	}
	if !slices.Contains(cols, "provider_config_key") || !slices.Contains(cols, "type") {
		return nil, errors.New("neither JSON Lines nor CSV with a header naming provider_config_key and type")
	}
	return cols, nil
}

func (s *csvSource) next() ([]byte, int, error) {
	row, err := s.r.Read()
	var parseErr *csv.ParseError
	if errors.As(err, &parseErr) {
		return nil, parseErr.StartLine, &recordErr{code: "invalid_csv", message: parseErr.Err.Error()}
	}
	if err != nil {
		return nil, 0, err
	}
	line, _ := s.r.FieldPos(0)
	body, err := s.body(row)
	var recErr *recordErr
	if errors.As(err, &recErr) {
		cells := map[string]string{}
		for i, col := range s.cols {
			cells[col] = row[i]
		}
		recErr.record, _ = json.Marshal(cells)
	}
	if err != nil {
		return nil, line, err
	}
	return body, line, nil
}

// body maps one CSV row to a POST /connections body:
//
//	provider_config_key, connection_id  the fields of the same name
//	type                                credentials.type
//	end_user.<field>                    end_user.<field>
//	metadata, connection_config         a JSON object
//	metadata.<k>, connection_config.<k>, tags.<k>  one string member
//	any other column                    a field of credentials: a string, or JSON where the
//	                                    credential type declares a value that is not a string
//
// An empty cell leaves its field out, except BASIC's username and password.
func (s *csvSource) body(row []string) ([]byte, error) {
	obj := map[string]any{}
	creds := map[string]any{}
	typ := ""
	for i, col := range s.cols {
		if col == "type" {
			typ = row[i]
		}
	}
	sub := func(name string) map[string]any {
		m, ok := obj[name].(map[string]any)
		if !ok {
			m = map[string]any{}
			obj[name] = m
		}
		return m
	}
	for i, col := range s.cols {
		cell := row[i]
		basic := typ == "BASIC" && (col == "username" || col == "password")
		if cell == "" && !basic {
			continue
		}
		prefix, key, dotted := strings.Cut(col, ".")
		switch {
		case col == "provider_config_key" || col == "connection_id":
			obj[col] = cell
		case col == "type":
			creds["type"] = cell
		case col == "metadata" || col == "connection_config":
			var v map[string]any
			if err := decodeCell(cell, &v); err != nil || v == nil {
				return nil, &recordErr{code: "invalid_csv", message: fmt.Sprintf("column %s: not a JSON object", col)}
			}
			m := sub(col)
			for k, x := range v {
				m[k] = x
			}
		case dotted && (prefix == "metadata" || prefix == "connection_config" || prefix == "tags" || prefix == "end_user"):
			sub(prefix)[key] = cell
		default:
			if s.types.isString(typ, col) {
				creds[col] = cell
				continue
			}
			var v any
			if err := decodeCell(cell, &v); err != nil {
				return nil, &recordErr{code: "invalid_csv", message: fmt.Sprintf("column %s: not JSON", col)}
			}
			creds[col] = v
		}
	}
	obj["credentials"] = creds
	return json.Marshal(obj)
}

func decodeCell(cell string, v any) error {
	dec := json.NewDecoder(strings.NewReader(cell))
	dec.UseNumber()
	return dec.Decode(v)
}

// credentialTypes tells, from openapi.yaml, which credential fields are strings.
type credentialTypes map[string]*openapi3.Schema

func newCredentialTypes() (credentialTypes, error) {
	spec, err := gen.GetSpec()
	if err != nil {
		return nil, err
	}
	ref := spec.Components.Schemas["ImportCredentials"]
	if ref == nil || ref.Value == nil || ref.Value.Discriminator == nil {
		return nil, errors.New("openapi.yaml: ImportCredentials has no discriminator")
	}
	out := credentialTypes{}
	for name, m := range ref.Value.Discriminator.Mapping {
		for _, member := range append(slices.Clone(ref.Value.OneOf), ref.Value.AnyOf...) {
			if member.Ref == m.Ref && member.Value != nil {
				out[name] = member.Value
			}
		}
	}
	return out, nil
}

// isString is whether field of the credential type typ is a string; fields the type does not
// declare are taken as strings, and the validator names them.
func (t credentialTypes) isString(typ, field string) bool {
	variant := t[typ]
	if variant == nil {
		return true
	}
	p, ok := variant.Properties[field]
	if !ok || p.Value == nil || p.Value.Type == nil || len(*p.Value.Type) == 0 {
		return true
	}
	return p.Value.Type.Includes("string")
}
