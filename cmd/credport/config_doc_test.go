package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// readmeConfig is the README's configuration table: environment variable → flag and default cells.
func readmeConfig(t *testing.T) map[string][2]string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Configuration\n")
	if !ok {
		t.Fatal("README.md has no Configuration section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[string][2]string{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.Contains(cells[1], "CREDPORT_") {
			continue
		}
		rows[strings.Trim(strings.TrimSpace(cells[1]), "`")] = [2]string{cells[2], cells[3]}
	}
	return rows
}

// TestREADMEConfigurationTable keeps the README's table in step with the code: every flag of
// serve (and the global --database) with its variable and default, and every CREDPORT_ variable
// the program reads.
func TestREADMEConfigurationTable(t *testing.T) {
	rows := readmeConfig(t)
	root := newRootCommand(func(string) string { return "" }, io.Discard, io.Discard)
	serve, _, err := root.Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	var flags []*pflag.Flag
	root.PersistentFlags().VisitAll(func(f *pflag.Flag) { flags = append(flags, f) })
	serve.Flags().VisitAll(func(f *pflag.Flag) { flags = append(flags, f) })
	for _, f := range flags {
		env := flagEnv(f.Usage)
		if env == "" {
			t.Errorf("--%s names no environment variable in its usage", f.Name)
			continue
		}
		row, ok := rows[env]
		if !ok {
			t.Errorf("README configuration table lacks %s (--%s)", env, f.Name)
			continue
		}
		if !strings.Contains(row[0], "--"+f.Name) {
			t.Errorf("README row %s names flag %q, want --%s", env, strings.TrimSpace(row[0]), f.Name)
		}
		wantDefault := "`" + f.DefValue + "`"
		if f.DefValue == "" {
			wantDefault = "empty"
		}
		if !strings.Contains(row[1], wantDefault) {
			t.Errorf("README row %s gives default %q, want %s", env, strings.TrimSpace(row[1]), wantDefault)
		}
	}

	read := regexp.MustCompile(`"(CREDPORT_[A-Z_]+)"`)
	sources, _ := filepath.Glob("*.go")
	more, _ := filepath.Glob("../../store/*.go")
	for _, file := range append(sources, more...) {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range read.FindAllStringSubmatch(string(data), -1) {
			if _, ok := rows[m[1]]; !ok {
				t.Errorf("%s reads %s, which the README configuration table lacks", file, m[1])
			}
		}
	}
}
