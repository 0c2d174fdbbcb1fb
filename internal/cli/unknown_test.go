package cli_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/cli"
)

// TestUnknownSubcommandFails: a word that names no command of a group is an error naming
// the closest commands, for every group, while a bare group still prints its help.
func TestUnknownSubcommandFails(t *testing.T) {
	run := func(args ...string) (string, error) {
		root := cli.NewRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(args)
		err := root.Execute()
		return out.String(), err
	}
	if _, err := run("registry", "config", "foo"); err == nil || !strings.Contains(err.Error(), `unknown command "foo" for "coffer registry config"`) {
		t.Fatalf("coffer registry config foo: %v", err)
	}
	if _, err := run("registry", "tags", "list"); err == nil || !strings.Contains(err.Error(), "did you mean tag?") {
		t.Fatalf("coffer registry tags list: %v, want a suggestion of tag", err)
	}
	if out, err := run("registry"); err != nil || !strings.Contains(out, "Available Commands") {
		t.Fatalf("coffer registry: %v\n%s", err, out)
	}
	// Every group refuses an unknown word.
	var groups []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, s := range c.Commands() {
			if s.HasSubCommands() {
				groups = append(groups, s)
			}
			walk(s)
		}
	}
	walk(cli.NewRoot())
	if len(groups) < 5 {
		t.Fatalf("only %d command groups found", len(groups))
	}
	for _, g := range groups {
		args := append(strings.Fields(strings.TrimPrefix(g.CommandPath(), "coffer ")), "no-such-command")
		if _, err := run(args...); err == nil || !strings.Contains(err.Error(), "unknown command") {
			t.Errorf("coffer %s: %v, want unknown command", strings.Join(args, " "), err)
		}
	}
}
