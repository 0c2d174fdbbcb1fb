package cli

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

func vaultCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vault",
		Short: "Manage key vaults, their keys, access policies and audit trail",
		Long: `A vault holds keys and answers the Azure Key Vault keys REST API at its own URL
(https://NAME.<vault-domain>:PORT, or https://HOST:PORT for a vault with --port).

Managing vaults (create, update, delete, access policies) needs vault/manage on the vault
(roles Owner or Contributor). Reading them (list, show, policy list, audit) needs vault/read
(also Reader, Key Vault Administrator or Key Vault Reader). Key commands need a key
permission: from an access policy ('coffer vault policy set'), or, in a vault created with
--rbac, from a role such as Key Vault Crypto Officer or Key Vault Crypto User.`,
		Example: `  coffer vault create team1
  coffer vault policy set team1 --object-id ci-deployer --key-permissions get,wrapKey,unwrapKey
  coffer vault key create team1 kek --kty RSA --size 3072`,
	}
	cmd.AddCommand(vaultCreateCmd(), vaultListCmd(), vaultShowCmd(), vaultUpdateCmd(), vaultDeleteCmd(),
		vaultPolicyCmd(), vaultAuditCmd(), vaultKeyCmd())
	return cmd
}

// vaultPath is the path of the vault args[0].
func vaultPath(args []string) string { return "/coffer/v1/vaults/" + url.PathEscape(args[0]) }

func vaultTable(vs ...wire.Vault) func() Table {
	return func() Table {
		t := Table{Header: []string{"NAME", "URL", "ACCESS MODEL", "RETENTION", "PURGE PROTECTION", "NETWORK"}}
		for _, v := range vs {
			model := "access policies"
			if v.EnableRbacAuthorization {
				model = "RBAC"
			}
			net := v.NetworkRules.DefaultAction
			if len(v.NetworkRules.IPRules) > 0 {
				net += " except " + strings.Join(v.NetworkRules.IPRules, ",")
			}
			t.Rows = append(t.Rows, []string{v.Name, v.URL, model, strconv.Itoa(v.SoftDeleteRetentionDays) + "d",
				strconv.FormatBool(v.EnablePurgeProtection), net + " (bypass " + v.NetworkRules.Bypass + ")"})
		}
		return t
	}
}

// vaultPropertyFlags are shared by create and update.
func vaultPropertyFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.Bool("rbac", false, "authorize with role assignments (enableRbacAuthorization) instead of access policies")
	f.Int("retention-days", 90, "soft-delete retention, 7 to 90 days")
	f.Bool("purge-protection", false, "refuse purging deleted keys before their retention ends (cannot be turned off)")
	f.Int("port", 0, "also answer on this port of its own (reachable with no DNS name; 0: none)")
	f.String("default-action", "Allow", "network rule default action: Allow or Deny")
	f.StringSlice("ip-rule", nil, "address or CIDR range allowed when the default action is Deny (repeatable)")
	f.String("bypass", "CofferServices", "let Coffer's own services (registry, KMS plugin) bypass network rules: CofferServices or None")
}

func vaultUpdateFromFlags(cmd *cobra.Command, all bool) wire.VaultUpdate {
	var u wire.VaultUpdate
	f := cmd.Flags()
	if all || f.Changed("rbac") {
		v, _ := f.GetBool("rbac")
		u.EnableRbacAuthorization = &v
	}
	if all || f.Changed("retention-days") {
		v, _ := f.GetInt("retention-days")
		u.SoftDeleteRetentionDays = &v
	}
	if all || f.Changed("purge-protection") {
		v, _ := f.GetBool("purge-protection")
		u.EnablePurgeProtection = &v
	}
	if all || f.Changed("port") {
		v, _ := f.GetInt("port")
		u.Port = &v
	}
	if all || f.Changed("default-action") || f.Changed("ip-rule") || f.Changed("bypass") {
		a, _ := f.GetString("default-action")
		ips, _ := f.GetStringSlice("ip-rule")
		b, _ := f.GetString("bypass")
		u.NetworkRules = &wire.NetworkRules{DefaultAction: a, IPRules: ips, Bypass: b}
	}
	return u
}

func vaultCreateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a vault",
		Long: `Create a vault and print its properties, including the URL to give the Azure SDK
(azkeys.NewClient). By default the vault authorizes key operations with access policies
('coffer vault policy set'); --rbac makes it use role assignments instead.

Needs vault/manage on the vault (role Owner or Contributor at / or /vaults/NAME).`,
		Example: `  coffer vault create team1
  coffer vault create prod --rbac --retention-days 30 --purge-protection
  coffer vault create edge --default-action Deny --ip-rule 10.0.0.0/8 --port 8443 -o json
  coffer vault create premium --hsm`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			u := vaultUpdateFromFlags(cmd, true)
			hsm, _ := cmd.Flags().GetBool("hsm")
			v := wire.Vault{Name: args[0], EnableRbacAuthorization: *u.EnableRbacAuthorization, SoftDeleteRetentionDays: *u.SoftDeleteRetentionDays,
				EnablePurgeProtection: *u.EnablePurgeProtection, Port: *u.Port, NetworkRules: *u.NetworkRules, HSM: hsm}
			var out wire.Vault
			if err := c.do(cmd.Context(), "POST", "/coffer/v1/vaults", v, &out); err != nil {
				return err
			}
			return printResult(cmd, out, vaultTable(out))
		},
	}
	vaultPropertyFlags(cmd)
	cmd.Flags().Bool("hsm", false, "keep the vault's RSA-HSM, EC-HSM and oct-HSM keys inside the server's PKCS#11 token (the server needs --hsm-module; docs/hsm.md)")
	return cmd
}

func vaultListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the vaults you may read",
		Long: `List the vaults on which you have vault/read (roles Owner, Contributor, Reader, Key Vault
Administrator or Key Vault Reader), with their URL, access model, soft-delete retention,
purge protection and network rules. Vaults you may not read are left out.`,
		Example: `  coffer vault list
  coffer vault list -o json`,
		Args: cobra.NoArgs,
		RunE: getRun(fixedPath("/coffer/v1/vaults"), func(in wire.List[wire.Vault]) []wire.Vault { return in.Value },
			func(vs []wire.Vault) Table { return vaultTable(vs...)() }),
	}
}

func vaultShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a vault's properties and the URL to give the Azure SDK",
		Long: `Show a vault's properties: its URL (what azkeys.NewClient takes), access model, soft-delete
retention, purge protection and network rules.

Needs vault/read on the vault.`,
		Example: `  coffer vault show team1
  coffer vault show team1 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: getRun(vaultPath, same[wire.Vault], func(v wire.Vault) Table {
			t := vaultTable(v)()
			t.Rows = append(t.Rows, []string{})
			if v.Port != 0 {
				t.Rows = append(t.Rows, []string{"note:", "by address no challenge resource can match the vault host: set azkeys.ClientOptions.DisableChallengeResourceVerification"})
			}
			return t
		}),
	}
}

func vaultUpdateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change a vault's properties (only the flags given)",
		Long: `Change a vault's properties. Only the flags given change; the network rule flags
(--default-action, --ip-rule, --bypass) are set together, so give all you want to keep.
Purge protection, once on, cannot be turned off. Prints the updated vault.

Needs vault/manage on the vault (role Owner or Contributor).`,
		Example: `  coffer vault update team1 --retention-days 30
  coffer vault update team1 --default-action Deny --ip-rule 10.0.0.0/8 --ip-rule 192.168.1.7
  coffer vault update team1 --default-action Allow`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.Vault
			if err := c.do(cmd.Context(), "PATCH", "/coffer/v1/vaults/"+url.PathEscape(args[0]), vaultUpdateFromFlags(cmd, false), &out); err != nil {
				return err
			}
			return printResult(cmd, out, vaultTable(out))
		},
	}
	vaultPropertyFlags(cmd)
	return cmd
}

func vaultDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an empty vault (delete and purge its keys first)",
		Long: `Delete a vault. The server refuses while the vault still holds keys, deleted keys
included: delete and purge them first ('coffer vault key delete', 'coffer vault key purge').

Needs vault/manage on the vault (role Owner or Contributor).`,
		Example: `  coffer vault delete team1`,
		Args:    cobra.ExactArgs(1),
		RunE: deleteRun(vaultPath, func(args []string) (any, func() Table, string) {
			return map[string]string{"deleted": args[0]}, nil, "deleted vault " + args[0]
		}),
	}
}

// accessPolicy is what the policy commands print of a wire.AccessPolicy (-o json has
// always left out updatedAt).
type accessPolicy struct {
	Vault          string   `json:"vault"`
	ObjectID       string   `json:"objectId"`
	KeyPermissions []string `json:"keyPermissions"`
}

func policyView(p wire.AccessPolicy) accessPolicy {
	return accessPolicy{Vault: p.Vault, ObjectID: p.ObjectID, KeyPermissions: p.KeyPermissions}
}

func policyTable(ps ...accessPolicy) func() Table {
	return func() Table {
		t := Table{Header: []string{"VAULT", "OBJECT ID", "KEY PERMISSIONS"}}
		for _, p := range ps {
			t.Rows = append(t.Rows, []string{p.Vault, p.ObjectID, strings.Join(p.KeyPermissions, ",")})
		}
		return t
	}
}

func vaultPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Manage a vault's access policies (used when the vault does not use RBAC)",
		Long: `An access policy gives one identity (user, service principal or managed identity) a set
of key permissions in one vault. Vaults created without --rbac decide key operations by
their access policies only; role assignments do not apply to them.`,
	}
	set := &cobra.Command{
		Use:   "set VAULT --object-id ID --key-permissions get,wrapKey,unwrapKey",
		Short: "Set (replace) an identity's key permissions in a vault",
		Long: `Set an identity's key permissions in a vault, replacing the ones it had. --object-id takes
the object id, or a name or client id that the server resolves. Permissions: get, list,
create, update, import, delete, recover, backup, restore, purge, wrapKey, unwrapKey,
encrypt, decrypt, sign, verify, rotate, getrotationpolicy, setrotationpolicy, or all.
Prints the policy as stored (with the resolved object id). The change is audited.

Needs vault/manage on the vault (role Owner or Contributor).`,
		Example: `  # What the registry or the KMS plugin needs for a customer-managed key
  coffer vault policy set team1 --object-id kms-plugin --key-permissions get,wrapKey,unwrapKey
  coffer vault policy set team1 --object-id alice --key-permissions all`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("object-id")
			perms, _ := cmd.Flags().GetStringSlice("key-permissions")
			if id == "" || len(perms) == 0 {
				return fmt.Errorf("give --object-id and --key-permissions (get, list, create, update, import, delete, recover, backup, restore, purge, wrapKey, unwrapKey, encrypt, decrypt, sign, verify, rotate, getrotationpolicy, setrotationpolicy, or all)")
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var pol wire.AccessPolicy
			path := "/coffer/v1/vaults/" + url.PathEscape(args[0]) + "/access-policies/" + url.PathEscape(id)
			if err := c.do(cmd.Context(), "PUT", path, wire.SetAccessPolicyRequest{KeyPermissions: perms}, &pol); err != nil {
				return err
			}
			out := policyView(pol)
			return printResult(cmd, out, policyTable(out))
		},
	}
	set.Flags().String("object-id", "", "object id of the identity (a name or client id is resolved)")
	set.Flags().StringSlice("key-permissions", nil, "key permissions, comma-separated")
	del := &cobra.Command{
		Use:   "delete VAULT --object-id ID",
		Short: "Remove an identity's access policy from a vault",
		Long: `Remove an identity's access policy from a vault: it loses every key permission there.
The change is audited.

Needs vault/manage on the vault (role Owner or Contributor).`,
		Example: `  coffer vault policy delete team1 --object-id kms-plugin`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("object-id")
			if id == "" {
				return fmt.Errorf("give --object-id")
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			path := "/coffer/v1/vaults/" + url.PathEscape(args[0]) + "/access-policies/" + url.PathEscape(id)
			if err := c.do(cmd.Context(), "DELETE", path, nil, nil); err != nil {
				return err
			}
			return printDone(cmd, map[string]string{"vault": args[0], "objectId": id, "deleted": "accessPolicy"},
				fmt.Sprintf("removed the access policy of %s from vault %s", id, args[0]))
		},
	}
	del.Flags().String("object-id", "", "object id of the identity (a name or client id is resolved)")
	list := &cobra.Command{
		Use:   "list VAULT",
		Short: "List a vault's access policies",
		Long: `List a vault's access policies: each identity's object id and key permissions.

Needs vault/read on the vault.`,
		Example: `  coffer vault policy list team1
  coffer vault policy list team1 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var list wire.List[wire.AccessPolicy]
			if err := c.do(cmd.Context(), "GET", "/coffer/v1/vaults/"+url.PathEscape(args[0])+"/access-policies", nil, &list); err != nil {
				return err
			}
			out := wire.MapSlice(list.Value, policyView)
			return printResult(cmd, out, policyTable(out...))
		},
	}
	cmd.AddCommand(set, del, list)
	return cmd
}
