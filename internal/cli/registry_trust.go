package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

const contentTrustPath = "/coffer/v1/registry/config/content-trust"

// registryConfigCommand is `coffer registry config`.
func registryConfigCommand() *cobra.Command {
	cfg := &cobra.Command{Use: "config", Short: "Show and change the registry's policies"}
	ct := &cobra.Command{
		Use:   "content-trust",
		Short: "Show or change the content-trust policy (Docker Content Trust / Notary v1)",
		Long: `Content trust serves the Notary v1 (TUF) API on the registry's own address, so that
'docker trust', DOCKER_CONTENT_TRUST=1 and the notary CLI sign and verify tags. It is off
until enabled. Publishing trust data needs push and the AcrImageSigner role (or a
repository token with content/sign); reading it needs pull. See docs/trust.md.`,
	}
	ct.AddCommand(contentTrustShowCommand(), contentTrustUpdateCommand())
	cfg.AddCommand(ct)
	return cfg
}

func contentTrustShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show whether content trust is enabled",
		Example: `  coffer registry config content-trust show
  coffer registry config content-trust show -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.ContentTrustPolicy
			if err := c.do(cmd.Context(), "GET", contentTrustPath, nil, &out); err != nil {
				return err
			}
			return printResult(cmd, out, func() Table {
				return Table{Header: []string{"STATUS"}, Rows: [][]string{{out.Status}}}
			})
		},
	}
}

func contentTrustUpdateCommand() *cobra.Command {
	var status string
	var yes bool
	cmd := &cobra.Command{
		Use:   "update --status enabled|disabled",
		Short: "Enable or disable content trust (disabling deletes all trust data)",
		Long: `Enable or disable content trust. Disabling deletes, irreversibly, the Notary v1 trust
data of every repository (every signed tag's signatures, roots, delegations) and every
server-held timestamp and snapshot key in the vault. Images, tags and Notary v2 / cosign
signatures (OCI artifacts) stay. Enabling again starts with no trust data: publishers
must sign their tags again and consumers must trust the new roots.`,
		Example: `  coffer registry config content-trust update --status enabled
  coffer registry config content-trust update --status disabled --yes -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			status = strings.ToLower(strings.TrimSpace(status))
			if status != wire.ContentTrustEnabled && status != wire.ContentTrustDisabled {
				return fmt.Errorf("--status must be enabled or disabled, not %q", status)
			}
			if status == wire.ContentTrustDisabled && !yes {
				return fmt.Errorf("disabling content trust deletes the trust data of every repository and every server-held trust key, irreversibly (images and cosign/notation signatures stay): add --yes to confirm")
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.ContentTrustUpdated
			if err := c.do(cmd.Context(), "PATCH", contentTrustPath, wire.ContentTrustUpdate{Status: status}, &out); err != nil {
				return err
			}
			return printResult(cmd, out, func() Table {
				t := Table{Header: []string{"STATUS"}, Rows: [][]string{{out.Status}}}
				if out.Deleted != nil {
					t.Header = append(t.Header, "DELETED COLLECTIONS", "DELETED METADATA", "DELETED KEYS")
					t.Rows[0] = append(t.Rows[0], fmt.Sprint(out.Deleted.Collections), fmt.Sprint(out.Deleted.Metadata), fmt.Sprint(out.Deleted.Keys))
				}
				return t
			})
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "enabled or disabled")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm disabling (it deletes all trust data)")
	cmd.MarkFlagRequired("status")
	return cmd
}
