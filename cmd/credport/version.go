package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// buildVersion is the module version and VCS revision of the running binary, from the build
// info the Go toolchain embeds: "(devel)" for a build from a work tree, "unknown" without it.
func buildVersion(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return "credport unknown"
	}
	version := info.Main.Version
	if version == "" {
		version = "unknown"
	}
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = " (modified)"
			}
		}
	}
	if revision == "" {
		revision = "unknown"
	}
	return fmt.Sprintf("credport %s, revision %s%s, %s", version, revision, modified, info.GoVersion)
}

func (a *app) versionString() string {
	info, ok := debug.ReadBuildInfo()
	return buildVersion(info, ok)
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the module version and VCS revision of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(a.stdout, a.versionString())
			return err
		},
	}
}
