package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

func spCommand() *cobra.Command {
	sp := &cobra.Command{
		Use:   "sp",
		Short: "Manage service principals (client id + client secret, for programs)",
		Long: `A service principal is a program's identity: a client id and one or more client
secrets, each with an expiry. Programs get tokens with the OAuth2 client-credentials
grant, for example with the Azure SDK's ClientSecretCredential pointed at this server
(AZURE_AUTHORITY_HOST=https://HOST:PORT, AZURE_TENANT_ID, AZURE_CLIENT_ID,
AZURE_CLIENT_SECRET). Secrets are shown once and stored hashed.`,
		Example: `  coffer sp create ci-deployer
  coffer sp list
  coffer sp credential reset ci-deployer --append
  coffer sp delete ci-deployer`,
	}
	cred := &cobra.Command{Use: "credential", Short: "Manage a service principal's client secrets",
		Example: `  coffer sp credential reset ci-deployer --years 2`}
	cred.AddCommand(spCredentialResetCommand())
	sp.AddCommand(spCreateCommand(), cred, spListCommand(), spDeleteCommand())
	return sp
}

// spCredentials is what creating a service principal or resetting its secret prints of the
// wire.ServicePrincipalCredentials answered.
type spCredentials struct {
	ServicePrincipal principalInfo `json:"servicePrincipal"`
	TenantID         string        `json:"tenantId"`
	ClientID         string        `json:"clientId"`
	ClientSecret     string        `json:"clientSecret"`
	SecretID         string        `json:"secretId"`
	SecretExpiresAt  time.Time     `json:"secretExpiresAt"`
}

func printSPCredentials(cmd *cobra.Command, in wire.ServicePrincipalCredentials) error {
	out := spCredentials{ServicePrincipal: identityView(in.ServicePrincipal), TenantID: in.TenantID, ClientID: in.ClientID,
		ClientSecret: in.ClientSecret, SecretID: in.SecretID, SecretExpiresAt: in.SecretExpiresAt}
	err := printResult(cmd, out, func() Table {
		return Table{Header: []string{"NAME", "CLIENT ID", "TENANT ID", "CLIENT SECRET", "EXPIRES"},
			Rows: [][]string{{out.ServicePrincipal.Name, out.ClientID, out.TenantID, out.ClientSecret, ts(out.SecretExpiresAt)}}}
	})
	if err == nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "The client secret is shown only this once: store it now.")
	}
	return err
}

func addLifetimeFlag(cmd *cobra.Command) {
	cmd.Flags().Int("years", 1, "lifetime of the client secret in years (1-10)")
}

func lifetimeDays(cmd *cobra.Command) (int, error) {
	years, _ := cmd.Flags().GetInt("years")
	if years < 1 || years > 10 {
		return 0, fmt.Errorf("--years %d: give 1 to 10", years)
	}
	return years * 365, nil
}

func spCreateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a service principal with a client secret (shown once)",
		Example: `  coffer sp create ci-deployer
  coffer sp create kms-plugin --years 2 -o json
  coffer role assignment create --role "Key Vault Crypto User" --assignee ci-deployer --scope /vaults/prod`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			days, err := lifetimeDays(cmd)
			if err != nil {
				return err
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.ServicePrincipalCredentials
			if err := c.do(cmd.Context(), http.MethodPost, "/coffer/v1/servicePrincipals",
				wire.CreateServicePrincipalRequest{Name: args[0], SecretLifetimeDays: days}, &out); err != nil {
				return err
			}
			return printSPCredentials(cmd, out)
		},
	}
	addLifetimeFlag(cmd)
	return cmd
}

func spCredentialResetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reset SP",
		Short: "Issue a new client secret (removing the old ones unless --append)",
		Long: `Issue a new client secret for the service principal SP (its name, object id or client
id). Without --append the existing secrets stop working at once and the principal's
refresh tokens are revoked; with --append they keep working until they expire, so a
program can switch over without downtime.`,
		Example: `  coffer sp credential reset ci-deployer
  coffer sp credential reset 5f0c...-client-id --append --years 2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			days, err := lifetimeDays(cmd)
			if err != nil {
				return err
			}
			appendSecret, _ := cmd.Flags().GetBool("append")
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.ServicePrincipalCredentials
			if err := c.do(cmd.Context(), http.MethodPost, "/coffer/v1/servicePrincipals/"+url.PathEscape(args[0])+"/credentials/reset",
				wire.ResetCredentialRequest{Append: appendSecret, SecretLifetimeDays: days}, &out); err != nil {
				return err
			}
			return printSPCredentials(cmd, out)
		},
	}
	addLifetimeFlag(cmd)
	cmd.Flags().Bool("append", false, "keep the existing secrets")
	return cmd
}

func spListCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List service principals and their secrets' expiry",
		Example: `  coffer sp list -o json`,
		Args:    cobra.NoArgs,
		RunE: getRun(fixedPath("/coffer/v1/servicePrincipals"), identityListView, func(list []principalInfo) Table {
			t := Table{Header: []string{"NAME", "CLIENT ID", "OBJECT ID", "SECRETS", "NEXT EXPIRY"}}
			for _, sp := range list {
				next := time.Time{}
				for _, c := range sp.Credentials {
					if c.ExpiresAt.After(time.Now()) && (next.IsZero() || c.ExpiresAt.Before(next)) {
						next = c.ExpiresAt
					}
				}
				t.Rows = append(t.Rows, []string{sp.Name, sp.ClientID, sp.ID, fmt.Sprint(len(sp.Credentials)), ts(next)})
			}
			return t
		}),
	}
}

func spDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "delete SP",
		Short:   "Delete a service principal (by name, object id or client id)",
		Example: `  coffer sp delete ci-deployer`,
		Args:    cobra.ExactArgs(1),
		RunE:    deletePrincipal("/coffer/v1/servicePrincipals/"),
	}
}
