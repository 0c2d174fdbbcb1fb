package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

const kmsPath = "/coffer/v1/kms/clusters"

// kmsCommand is `coffer kms`: the KMS v2 settings of Kubernetes clusters.
func kmsCommand() *cobra.Command {
	k := &cobra.Command{
		Use:   "kms",
		Short: "Manage Kubernetes clusters' KMS v2 keys (Secrets encrypted in etcd)",
		Long: `A cluster's Secrets are encrypted in etcd by the kube-apiserver under seeds that the
Coffer KMS plugin (coffer kms-plugin) wraps with a key from a vault: a platform-managed key
(PMK) that Coffer creates and rotates, or a customer-managed key (CMK) in a vault the team
controls. The settings live on the Coffer server, so moving a cluster between keys needs
no change on its nodes (docs/kms.md).`,
	}
	cluster := &cobra.Command{Use: "cluster", Short: "Create, change, show, list and delete clusters' KMS settings"}
	cluster.AddCommand(kmsClusterCreateCommand(), kmsClusterUpdateCommand(), kmsClusterShowCommand(), kmsClusterListCommand(), kmsClusterDeleteCommand())
	k.AddCommand(cluster, kmsRotateNowCommand(), kmsReencryptCommand())
	return k
}

func kmsClusterTable(cs ...wire.KMSCluster) func() Table {
	return func() Table {
		t := Table{Header: []string{"NAME", "KEY MANAGEMENT", "KEY", "NETWORK", "CURRENT KEY VERSION", "DECRYPT-ONLY", "PLUGIN"}}
		for _, c := range cs {
			plugin := "never reported"
			if s := c.PluginStatus; s != nil {
				plugin = s.Healthz + " at " + s.CheckedAt.Format("2006-01-02T15:04:05Z")
			}
			t.Rows = append(t.Rows, []string{c.Name, c.KeyManagement, c.SecurityProfile.AzureKeyVaultKms.KeyID,
				c.SecurityProfile.AzureKeyVaultKms.KeyVaultNetworkAccess, c.CurrentKeyID, fmt.Sprint(len(c.DecryptOnlyKeys)), plugin})
		}
		return t
	}
}

func kmsFlags(cmd *cobra.Command, req *wire.KMSClusterRequest) {
	f := cmd.Flags()
	f.StringVar(&req.KeyManagement, "key-management", "", "PMK (Coffer creates and rotates the key) or CMK (your key, --key-id)")
	f.StringVar(&req.KeyID, "key-id", "", "CMK: versionless key id, https://VAULT-HOST/keys/NAME")
	f.StringVar(&req.KeyVaultNetworkAccess, "key-vault-network-access", "", "Public (the plugin calls the vault) or Private (through Coffer, as a Coffer service)")
	f.StringVar(&req.Identity, "identity", "", "the plugin's service principal (name, object id or client id)")
	f.StringVar(&req.InfrastructureEncryption, "infrastructure-encryption", "", "Enabled or Disabled")
}

func kmsClusterCreateCommand() *cobra.Command {
	var req wire.KMSClusterRequest
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Configure a cluster's KMS key",
		Long: `Configure a cluster. With --key-management PMK, Coffer creates an RSA 3072 key with a
rotation policy in its platform vault (coffer-kms) and grants it to the plugin's identity.
With CMK, the key (in one of this server's vaults) is checked now, as the plugin's identity:
it needs Key Vault Crypto User, or an access policy with get, wrapKey and unwrapKey.`,
		Example: `  coffer kms cluster create prod --key-management PMK --identity kms-prod
  coffer kms cluster create prod --key-management CMK --key-id https://team.vault.localhost:5000/keys/k8s \
    --identity kms-prod --key-vault-network-access Private -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			req.Name = args[0]
			if req.KeyManagement == "" {
				req.KeyManagement = wire.KMSPlatformManaged
			}
			var out wire.KMSCluster
			if err := c.do(cmd.Context(), http.MethodPost, kmsPath, req, &out); err != nil {
				return err
			}
			return printResult(cmd, out, kmsClusterTable(out))
		},
	}
	kmsFlags(cmd, &req)
	return cmd
}

func kmsClusterUpdateCommand() *cobra.Command {
	var req wire.KMSClusterRequest
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change a cluster's key (PMK ↔ CMK); the previous key stays decrypt-only",
		Long: `Change a cluster's settings. A new key becomes the write key at the plugin's next poll
(or at once with 'coffer kms rotate-now --plugin-health'); every earlier key stays
decrypt-only, so every Secret still reads. Then run 'coffer kms reencrypt' to rewrite them
under the new key.`,
		Example: `  coffer kms cluster update prod --key-management CMK --key-id https://team.vault.localhost:5000/keys/k8s
  coffer kms cluster update prod --key-management PMK`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.KMSCluster
			if err := c.do(cmd.Context(), http.MethodPatch, kmsPath+"/"+url.PathEscape(args[0]), req, &out); err != nil {
				return err
			}
			return printResult(cmd, out, kmsClusterTable(out))
		},
	}
	kmsFlags(cmd, &req)
	return cmd
}

func kmsClusterShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a cluster's securityProfile, current key version, decrypt-only keys and plugin status",
		Example: `  coffer kms cluster show prod -o json
  coffer kms cluster show prod -o json | jq .securityProfile.azureKeyVaultKms`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.KMSCluster
			if err := c.do(cmd.Context(), http.MethodGet, kmsPath+"/"+url.PathEscape(args[0]), nil, &out); err != nil {
				return err
			}
			return printResult(cmd, out, kmsClusterTable(out))
		},
	}
}

func kmsClusterListCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the clusters",
		Example: `  coffer kms cluster list -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.List[wire.KMSCluster]
			if err := c.do(cmd.Context(), http.MethodGet, kmsPath, nil, &out); err != nil {
				return err
			}
			return printResult(cmd, out, kmsClusterTable(out.Value...))
		},
	}
}

func kmsClusterDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Short:   "Remove a cluster's settings (its keys stay in their vaults)",
		Example: `  coffer kms cluster delete old-cluster`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), http.MethodDelete, kmsPath+"/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			return printDone(cmd, map[string]string{"deleted": args[0]}, "deleted cluster "+args[0])
		},
	}
}

func kmsRotateNowCommand() *cobra.Command {
	var cluster, pluginHealth string
	cmd := &cobra.Command{
		Use:   "rotate-now",
		Short: "Rotate a cluster's platform-managed key now, and make the plugin pick it up",
		Long: `With --cluster, make a new version of the cluster's PMK now (a CMK is rotated in its own
vault). With --plugin-health (the plugin's --health-listen address), make the plugin read
its settings and the write key's newest version at once, instead of at its next
--key-rotation-poll. The apiserver sees the new key_id within its one-minute Status poll.`,
		Example: `  coffer kms rotate-now --cluster prod --plugin-health 127.0.0.1:8787
  coffer kms rotate-now --plugin-health 127.0.0.1:8787   # after rotating a CMK in its vault`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cluster == "" && pluginHealth == "" {
				return fmt.Errorf("give --cluster (rotate the PMK), --plugin-health (trigger the plugin's poll), or both")
			}
			var out wire.KMSCluster
			if cluster != "" {
				c, err := newAPIClient(cmd)
				if err != nil {
					return err
				}
				if err := c.do(cmd.Context(), http.MethodPost, kmsPath+"/"+url.PathEscape(cluster)+"/rotate", nil, &out); err != nil {
					return err
				}
			}
			if pluginHealth != "" {
				u := pluginHealth
				if !strings.Contains(u, "://") {
					u = "http://" + u
				}
				req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, strings.TrimRight(u, "/")+"/poll", nil)
				if err != nil {
					return err
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return fmt.Errorf("trigger the plugin's poll at %s: %w", u, err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					return fmt.Errorf("trigger the plugin's poll at %s: %s", u, resp.Status)
				}
			}
			return printDone(cmd, map[string]any{"cluster": out.Name, "rotated": cluster != "", "pollTriggered": pluginHealth != ""}, "done: the apiserver uses the new key version within a minute")
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster whose platform-managed key to rotate")
	cmd.Flags().StringVar(&pluginHealth, "plugin-health", "", "the plugin's --health-listen address (127.0.0.1:8787)")
	return cmd
}
