package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/imagecrypt/keyprovider"
)

func keyproviderCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keyprovider --config FILE [--grpc unix:///PATH]",
		Short: "Run Coffer's ocicrypt key provider (command on stdin/stdout, or gRPC on a unix socket)",
		Long: `Coffer's ocicrypt key provider, named "coffer": recipients and keys provider:coffer:KEY-URL.
It wraps each layer's key with a vault key and unwraps through the vault with the identity in
--config (a JSON file: tenantId, clientId, clientSecret or clientSecretFile, authorityHost,
caFile; without a secret, the host's managed identity), so a node with the unwrapKey
permission runs encrypted images and one without it is refused.

Without --grpc it answers one request from stdin on stdout (ocicrypt's command transport).
With --grpc it serves KeyProviderService on the unix socket until stopped. It never logs or
keeps the DecryptConfig ocicrypt sends it. Needs ocicrypt 1.1 or later in the client.`,
		Example: `  coffer keyprovider --config /etc/coffer/keyprovider.json
  coffer keyprovider --config /etc/coffer/keyprovider.json --grpc unix:///run/coffer/keyprovider.sock
  coffer keyprovider config --command /usr/local/bin/coffer --config /etc/coffer/keyprovider.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			file, _ := cmd.Flags().GetString("config")
			if file == "" {
				return fmt.Errorf("give --config FILE (the identity the provider reaches the vault as)")
			}
			c, err := keyprovider.LoadConfig(file)
			if err != nil {
				return err
			}
			p := keyprovider.New(c.Resolver(), c.Identity())
			addr, _ := cmd.Flags().GetString("grpc")
			if addr == "" {
				return keyprovider.Command(cmd.Context(), p, cmd.InOrStdin(), cmd.OutOrStdout())
			}
			path, ok := strings.CutPrefix(addr, "unix://")
			if !ok {
				return fmt.Errorf("--grpc must be unix:///PATH")
			}
			ln, err := keyprovider.ListenUnix(path)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			log.Info("coffer key provider serving", "grpc", addr)
			return p.Serve(ctx, ln, log)
		},
	}
	cmd.Flags().String("config", "", "identity file (JSON) the provider reaches the vault with")
	cmd.Flags().String("grpc", "", "serve gRPC on this unix socket (unix:///PATH) instead of one request on stdin")
	conf := &cobra.Command{
		Use:   "config (--command PATH --config FILE | --grpc unix:///PATH)",
		Short: "Print the OCICRYPT_KEYPROVIDER_CONFIG JSON for containerd imgcrypt, CRI-O and skopeo",
		Example: `  coffer keyprovider config --command /usr/local/bin/coffer --config /etc/coffer/keyprovider.json > /etc/containerd/ocicrypt_keyprovider.conf
  coffer keyprovider config --grpc unix:///run/coffer/keyprovider.sock`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			bin, _ := cmd.Flags().GetString("command")
			file, _ := cmd.Flags().GetString("config")
			addr, _ := cmd.Flags().GetString("grpc")
			var command []string
			if bin != "" {
				if file == "" {
					return fmt.Errorf("--command needs --config FILE (the provider's identity)")
				}
				command = []string{bin, "keyprovider", "--config", file}
			}
			raw, err := keyprovider.OcicryptConfig(command, addr)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(raw))
			return err
		},
	}
	conf.Flags().String("command", "", "path of the coffer binary (command transport)")
	conf.Flags().String("config", "", "identity file the command is run with")
	conf.Flags().String("grpc", "", "gRPC address unix:///PATH (gRPC transport)")
	cmd.AddCommand(conf)
	return cmd
}
