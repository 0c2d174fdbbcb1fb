package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/server"
)

func serveCommand() *cobra.Command {
	cfg := config.Defaults()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Coffer server",
		Long: `Run the Coffer server: registry, vault, token service and management API on one
HTTPS listener.

With no flags it keeps all state in ./coffer-data, listens on 127.0.0.1:5000 and serves
HTTPS with a certificate from a local CA it creates on first start
(coffer-data/tls/ca.pem). On first start it creates the user 'admin', prints its
password once and writes it to coffer-data/initial-admin-password (mode 0600).

Every flag can also be set as an environment variable COFFER_<FLAG> (for example
COFFER_DATA_DIR) or as a key of the YAML file given with --config (for example
'data-dir: /var/lib/coffer'). Flags win over the environment, which wins over the file.`,
		Example: `  coffer serve                                   # ./coffer-data, https://127.0.0.1:5000
  coffer serve --data-dir /var/lib/coffer --listen 0.0.0.0:443 --hostname registry.example.com
  coffer serve --tls-cert tls.pem --tls-key tls-key.pem   # an operator's certificate
  COFFER_LOG_FORMAT=json coffer serve --config /etc/coffer/coffer.yaml
  coffer serve --blob-store s3://team-registry/coffer --s3-endpoint https://s3.example.com \
    --s3-path-style --s3-access-key-id AKIA... --s3-secret-access-key-file /run/secrets/s3
  PGPASSWORD=... coffer serve --metadata 'postgres://coffer@db.example.com/coffer?sslmode=verify-full&sslrootcert=db-ca.pem'
  # The Kubernetes KMS v2 plugin in-process, for a cluster created with 'coffer kms cluster create':
  coffer serve --kms-plugin-socket unix:///var/run/coffer-kms/kms.sock --kms-cluster prod-eu \
    --kms-plugin-health-listen 127.0.0.1:8787
  coffer serve --kms-plugin-socket unix:///run/kms/eu.sock=prod-eu,unix:///run/kms/us.sock=prod-us
  kill -HUP "$(pidof coffer)"   # every in-process KMS plugin reads its key settings now`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.Load(&cfg, cmd.Flags(), os.Getenv); err != nil {
				return err
			}
			log, err := newLogger(cfg.LogFormat, cfg.LogLevel)
			if err != nil {
				return err
			}
			srv, err := server.New(cmd.Context(), cfg, log, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Coffer is serving on %s (data in %s)\n", srv.URL(), cfg.DataDir)
			return srv.Serve(cmd.Context())
		},
	}
	cfg.BindFlags(cmd.Flags())
	return cmd
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: use text or json", format)
	}
}
