package cli

import (
	"net/http"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

func identityCommand() *cobra.Command {
	id := &cobra.Command{
		Use:   "identity",
		Short: "Manage managed identities (for the registry and services beside Coffer)",
		Long: `A user-assigned managed identity has a principal (object) id and a client id and no
secret: a process on the Coffer machine gets its tokens from the managed-identity
endpoint (App Service protocol), for example with the Azure SDK's
ManagedIdentityCredential and

  IDENTITY_ENDPOINT=https://localhost:5000/msi/token
  IDENTITY_HEADER=$(cat coffer-data/keys/identity-header)

The registry's own system-assigned identity, named "registry", is listed too; it is
created on first start and cannot be deleted.`,
		Example: `  coffer identity create kms-plugin
  coffer identity list
  coffer identity show kms-plugin -o json
  coffer identity delete kms-plugin`,
	}
	id.AddCommand(identityCreateCommand(), identityListCommand(), identityShowCommand(), identityDeleteCommand())
	return id
}

func identityTable(list []principalInfo) Table {
	t := Table{Header: []string{"NAME", "KIND", "CLIENT ID", "PRINCIPAL ID", "CREATED"}}
	for _, p := range list {
		t.Rows = append(t.Rows, []string{p.Name, p.Kind, p.ClientID, p.ID, ts(p.CreatedAt)})
	}
	return t
}

func identityCreateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "create NAME",
		Short: "Create a user-assigned managed identity",
		Example: `  coffer identity create kms-plugin
  coffer role assignment create --role "Key Vault Crypto Service Encryption User" --assignee kms-plugin --scope /vaults/prod`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var created wire.ManagedIdentity
			if err := c.do(cmd.Context(), http.MethodPost, "/coffer/v1/managedIdentities", wire.CreateManagedIdentityRequest{Name: args[0]}, &created); err != nil {
				return err
			}
			out := managedIdentityView(created)
			return printResult(cmd, out, func() Table { return identityTable([]principalInfo{out}) })
		},
	}
}

func identityListCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List managed identities (user-assigned and the registry's system-assigned one)",
		Example: `  coffer identity list -o json`,
		Args:    cobra.NoArgs,
		RunE: getRun(fixedPath("/coffer/v1/managedIdentities"), func(in wire.List[wire.ManagedIdentity]) []principalInfo {
			return wire.MapSlice(in.Value, managedIdentityView)
		}, identityTable),
	}
}

func identityShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "show IDENTITY",
		Short:   "Show a managed identity (by name, principal id or client id)",
		Example: `  coffer identity show kms-plugin`,
		Args:    cobra.ExactArgs(1),
		RunE: getRun(func(args []string) string { return "/coffer/v1/managedIdentities/" + url.PathEscape(args[0]) },
			managedIdentityView, func(p principalInfo) Table { return identityTable([]principalInfo{p}) }),
	}
}

func identityDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete IDENTITY",
		Short: "Delete a user-assigned managed identity",
		Long: `Delete a user-assigned managed identity. The server refuses while the identity is in
use, for example by the registry's customer-managed-key encryption.`,
		Example: `  coffer identity delete kms-plugin`,
		Args:    cobra.ExactArgs(1),
		RunE:    deletePrincipal("/coffer/v1/managedIdentities/"),
	}
}
