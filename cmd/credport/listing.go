package main

import (
	"encoding/json"
	"io"
	"strings"
)

// printTable writes a header row, then one row a line, cells separated by tabs: `cut -f` and
// `awk -F'\t'` read it after the header (`tail -n +2`); --json is the form meant for scripts.
func printTable(w io.Writer, header []string, rows [][]string) error {
	var b strings.Builder
	for _, row := range append([][]string{header}, rows...) {
		b.WriteString(strings.Join(row, "\t"))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printJSON writes v as indented JSON: an array for a list, never null.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
