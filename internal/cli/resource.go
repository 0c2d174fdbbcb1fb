package cli

import (
	"net/http"

	"github.com/spf13/cobra"
)

// The list, show and delete commands of every resource have one shape: call the API with
// a path made from the arguments, decode the wire type, print it as JSON (-o json) or as
// a table. These helpers are that shape.

// getRun makes a RunE that GETs path(args) into a T and prints view(T): the same value as
// JSON with -o json, its table otherwise.
func getRun[T, V any](path func(args []string) string, view func(T) V, table func(V) Table) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := newAPIClient(cmd)
		if err != nil {
			return err
		}
		var in T
		if err := c.do(cmd.Context(), http.MethodGet, path(args), nil, &in); err != nil {
			return err
		}
		v := view(in)
		return printResult(cmd, v, func() Table { return table(v) })
	}
}

// deleteRun makes a RunE that DELETEs path(args), then prints what done(args) says: a
// value for -o json and a sentence, or (sentence "") a table of the value.
func deleteRun(path func(args []string) string, done func(args []string) (v any, table func() Table, sentence string)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := newAPIClient(cmd)
		if err != nil {
			return err
		}
		if err := c.do(cmd.Context(), http.MethodDelete, path(args), nil, nil); err != nil {
			return err
		}
		v, table, sentence := done(args)
		if sentence != "" {
			return printDone(cmd, v, sentence)
		}
		return printResult(cmd, v, table)
	}
}

// same is the view of a value printed as decoded.
func same[T any](v T) T { return v }

// orEmpty is list, or an empty list for nil (so that it prints as []).
func orEmpty[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}
