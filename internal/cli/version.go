package cli

import (
	"runtime"

	"github.com/spf13/cobra"
)

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Coffer's version",
		Example: `  coffer version
  coffer version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := map[string]string{"version": Version, "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH}
			return printResult(cmd, v, func() Table {
				return Table{Header: []string{"VERSION", "GO", "PLATFORM"}, Rows: [][]string{{v["version"], v["go"], v["platform"]}}}
			})
		},
	}
}
