package cli_test

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/cli"
)

// TestEveryCommandHasHelp walks the whole command tree and requires every runnable command
// to have a Short description and an Example a newcomer can copy, and every command with
// subcommands to have a Short description. Only cobra's own help and completion commands
// are skipped.
func TestEveryCommandHasHelp(t *testing.T) {
	root := cli.NewRoot()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()

	var walk func(c *cobra.Command)
	runnable := 0
	walk = func(c *cobra.Command) {
		path := c.CommandPath()
		if c.Parent() == root && (c.Name() == "help" || c.Name() == "completion") {
			return // cobra's own
		}
		if strings.TrimSpace(c.Short) == "" {
			t.Errorf("%q has no Short description", path)
		}
		// A group's own run only prints its help or refuses an unknown word.
		if c.Runnable() && !c.HasSubCommands() {
			runnable++
			if strings.TrimSpace(c.Example) == "" {
				t.Errorf("%q has no Example: add 1-3 invocations that work as written", path)
			} else if !strings.Contains(c.Example, root.Name()+" ") {
				t.Errorf("%q: its Example does not show a %q command line:\n%s", path, root.Name(), c.Example)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)

	if runnable < 50 {
		t.Fatalf("walked only %d runnable commands: the tree was not built", runnable)
	}
}

// TestHelpExamplesUseRealFlags checks every "coffer ..." line of every Example: the words
// must name an existing command (aliases allowed) and every --flag must exist on it (its
// own flags or the inherited global ones), so examples do not rot when a flag is renamed.
func TestHelpExamplesUseRealFlags(t *testing.T) {
	root := cli.NewRoot()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, line := range strings.Split(c.Example, "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "#") {
				continue
			}
			// The part of the line that runs coffer: from "coffer " up to a pipe, a
			// redirection, a comment or the next command.
			i := strings.Index(line, root.Name()+" ")
			if i < 0 {
				continue
			}
			line = line[i:]
			for _, cut := range []string{" | ", " #", " < ", " > ", " && ", "; "} {
				if j := strings.Index(line, cut); j >= 0 {
					line = line[:j]
				}
			}
			words := strings.Fields(line)[1:]
			target, rest, err := root.Find(words)
			if err != nil || target == root && len(words) > 0 && !strings.HasPrefix(words[0], "-") {
				t.Errorf("%q: its Example runs an unknown command: %s (%v)", c.CommandPath(), line, err)
				continue
			}
			for _, word := range rest {
				name, ok := strings.CutPrefix(word, "--")
				if !ok || name == "" {
					continue
				}
				name, _, _ = strings.Cut(name, "=")
				if target.Flags().Lookup(name) == nil && target.InheritedFlags().Lookup(name) == nil {
					t.Errorf("%q: its Example uses --%s, which %q does not have:\n  %s", c.CommandPath(), name, target.CommandPath(), line)
				}
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
