package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// Table is a value's table form: column headings and rows.
type Table struct {
	Header []string
	Rows   [][]string
}

// printResult prints v as JSON with -o json, or as the table made by table() otherwise.
func printResult(cmd *cobra.Command, v any, table func() Table) error {
	format, _ := cmd.Flags().GetString("output")
	out := cmd.OutOrStdout()
	switch format {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "table", "":
		if table == nil {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(v)
		}
		writeTable(out, table())
		return nil
	default:
		return fmt.Errorf("unknown output format %q: use table or json", format)
	}
}

func writeTable(out io.Writer, t Table) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if len(t.Header) > 0 {
		fmt.Fprintln(tw, strings.Join(t.Header, "\t"))
	}
	for _, r := range t.Rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// printDone reports a command that has no resource to print: v as JSON with -o json, the
// sentence msg otherwise.
func printDone(cmd *cobra.Command, v any, msg string) error {
	if format, _ := cmd.Flags().GetString("output"); format == "table" || format == "" {
		fmt.Fprintln(cmd.OutOrStdout(), msg)
		return nil
	}
	return printResult(cmd, v, nil)
}
