package cli

import (
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/server"
)

func migrateCommand() *cobra.Command {
	cfg := config.Defaults()
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Bring the metadata database up to this version's schema, without serving",
		Long: `Apply every part's schema migrations to the metadata database (--metadata, or SQLite in
--data-dir) and initialise it as a first start of 'coffer serve' would (the administrator,
the first token signing key, the registry's first root key), then stop. Nothing is served:
it binds only a free port of 127.0.0.1 while it runs.

Run it once before starting or upgrading replicas, so that none of them migrates while
serving. It takes the same lock as 'coffer serve': run beside starting replicas, one of
them waits for the other. Running it again applies nothing. It reads the same flags,
COFFER_* variables and --config file as 'coffer serve' and needs what serve needs: the
vault root key every replica is given, and the blob store.`,
		Example: `  coffer migrate --data-dir /var/lib/coffer          # SQLite in the data directory
  PGPASSWORD=... coffer migrate --metadata 'postgres://coffer@db.example.com/coffer?sslmode=verify-full&sslrootcert=db-ca.pem' \
    --vault-root-key-file /run/secrets/coffer-root.key --blob-store s3://team-registry/coffer
  coffer migrate --config /etc/coffer/coffer.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.Load(&cfg, cmd.Flags(), os.Getenv); err != nil {
				return err
			}
			log, err := newLogger(cfg.LogFormat, cfg.LogLevel)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "migrating the metadata database (waits if a replica is starting)...")
			rep, err := server.Migrate(cmd.Context(), cfg, log, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return printResult(cmd, rep, func() Table {
				t := Table{Header: []string{"COMPONENT", "BEFORE", "AFTER"}}
				for _, c := range rep.Components {
					t.Rows = append(t.Rows, []string{c.Component, strconv.Itoa(c.Before), strconv.Itoa(c.After)})
				}
				t.Rows = append(t.Rows, []string{"", "", ""}, []string{fmt.Sprintf("%d steps applied to %s", rep.Applied, rep.Metadata), "", ""})
				return t
			})
		},
	}
	cfg.BindFlags(cmd.Flags())
	return cmd
}
