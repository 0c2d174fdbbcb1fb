// Package cli is Coffer's command line: `coffer serve` runs the server, every other command
// is a client of the server's APIs. Each part's commands live in a file of their own.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X github.com/cofferhq/coffer/internal/cli.Version=…".
var Version = "dev"

// Execute runs the command line and returns the process exit code.
func Execute() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewRoot()
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// NewRoot builds the whole command tree (tests drive it directly).
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "coffer",
		Short: "Coffer: a self-hosted container registry that keeps images sealed",
		Long: `Coffer is a self-hosted OCI registry that encrypts everything it stores, under a
platform-managed key or a customer-managed key held in a key vault, and a key vault that
speaks the Azure Key Vault keys REST API, in one binary.

Start a server with 'coffer serve', then 'coffer login' to use the management commands
(users, service principals, managed identities, roles, repository tokens, vaults and keys,
the registry and its encryption). Every command prints a table, or JSON with -o json.`,
		Example: `  coffer serve
  coffer login https://localhost:5000 -u admin --password-stdin --ca-file coffer-data/tls/ca.pem < coffer-data/initial-admin-password
  coffer registry repo list -o json`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringP("output", "o", "table", "output format: table or json")
	root.PersistentFlags().String("server", "", "server URL (default: from 'coffer login', or $COFFER_SERVER)")
	root.PersistentFlags().String("ca-file", "", "CA certificate to trust for the server (default: from 'coffer login', or $COFFER_CA_FILE)")
	// Each part's commands come from its own file.
	root.AddCommand(
		identityCommand(),
		imageCommand(), keyproviderCommand(),
		kmsCommand(), kmsPluginCommand(),
		loginCommand(), logoutCommand(),
		migrateCommand(),
		registryCommand(),
		roleCommand(),
		serveCommand(),
		spCommand(),
		tokenCommand(),
		userCommand(),
		vaultCommand(),
		versionCommand(),
	)
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command group fail on a word that names none of its
// commands ("coffer registry config"): cobra would print the group's help and exit 0, so a
// script could not tell a typo from success. A group given no word still prints its help.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if !c.HasSubCommands() || c.Runnable() {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.SuggestionsMinimumDistance = 2
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf("; did you mean %s?", strings.Join(s, ", "))
		}
		names := []string{}
		for _, sub := range cmd.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		return fmt.Errorf("%s (its commands: %s; see '%s --help')", msg, strings.Join(names, ", "), cmd.CommandPath())
	}
}
