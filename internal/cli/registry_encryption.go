package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// encryptionCommand is `coffer registry encryption`.
func encryptionCommand() *cobra.Command {
	enc := &cobra.Command{
		Use:   "encryption",
		Short: "Show and manage the registry's encryption at rest",
		Long: `Everything the registry stores is encrypted at rest. By default the key is a
platform-managed key that Coffer created in its own vault (coffer-platform); a
customer-managed key is an RSA or RSA-HSM key in any vault that speaks the Key Vault
keys API (this server's vaults, another Coffer server, or Azure Key Vault), reached as
a managed identity or as the registry's system identity ([system]).

A key id with a version pins that version until 'rotate-key'; a key id without a
version turns on automatic rotation to the key's newest version.`,
	}
	enc.AddCommand(encryptionShowCommand(), encryptionEnableCommand(), encryptionRotateCommand(), encryptionNewRootKeyCommand(), encryptionDisableCommand())
	return enc
}

const encryptionPath = "/coffer/v1/registry/encryption"

// printEncryption prints the status as JSON with its members sorted by name, as these
// commands always have.
func printEncryption(cmd *cobra.Command, st wire.EncryptionStatus) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	var sorted map[string]any
	if err := json.Unmarshal(raw, &sorted); err != nil {
		return err
	}
	return printResult(cmd, sorted, nil)
}

func encryptionShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show the encryption settings, and whether the key is accessible now",
		Long: `Show how the registry's content is encrypted at rest: the key source (platform or
customer), the key id as configured and the version in use, whether automatic rotation is
on, when the key last rotated, and whether the registry can use the key right now (with the
vault's error if not). The answer is always JSON, the shape 'az acr encryption show' prints;
"status" is "enabled" only for a customer-managed key ("encryptedAtRest" is always true).
Needs registry/manage (Owner or Contributor).`,
		Example: `  coffer registry encryption show
  coffer registry encryption show | jq .keyVaultProperties.versionedKeyIdentifier`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.EncryptionStatus
			if err := c.do(cmd.Context(), "GET", encryptionPath, nil, &out); err != nil {
				return err
			}
			return printEncryption(cmd, out)
		},
	}
}

func encryptionNewRootKeyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "new-root-key",
		Short: "Seal new content under a fresh root key (a new generation); stored content stays readable",
		Long: `Add a root key: 256 new random bits, wrapped under the key-encryption key in use, that
every object stored from now on is sealed under. Objects sealed before keep their
generation's root key and stay readable; a later rotate-key re-wraps every generation.
Use it after a suspected exposure of a root key, or by policy. Other replicas read the
new generation's objects at once and seal under it after their next key check (at most
the access-check interval). Prints the status; "rootKeyGeneration" is the new generation.
Needs registry/manage (Owner or Contributor).`,
		Example: `  coffer registry encryption new-root-key
  coffer registry encryption new-root-key | jq .rootKeyGeneration`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.EncryptionStatus
			if err := c.do(cmd.Context(), "POST", encryptionPath+"/root-key", nil, &out); err != nil {
				return err
			}
			return printEncryption(cmd, out)
		},
	}
}

func encryptionChangeCommand(use, short, example, path string, identityDefault string) *cobra.Command {
	var keyID, ident string
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.EncryptionStatus
			body := wire.EncryptionKeyRequest{KeyEncryptionKey: keyID, Identity: ident}
			if err := c.do(cmd.Context(), "POST", encryptionPath+path, body, &out); err != nil {
				return err
			}
			if path == "/enable" {
				fmt.Fprintln(cmd.ErrOrStderr(), "The registry is now encrypted under the customer-managed key. This cannot be disabled; "+
					"change the key, version or identity with 'coffer registry encryption rotate-key'.")
			}
			return printEncryption(cmd, out)
		},
	}
	cmd.Flags().StringVar(&keyID, "key-encryption-key", "", "key id: https://VAULT-HOST/keys/NAME (automatic rotation) or .../NAME/VERSION (pinned)")
	cmd.Flags().StringVar(&ident, "identity", identityDefault, "managed identity (client id or principal id) that reaches the key, or [system]")
	cmd.MarkFlagRequired("key-encryption-key")
	return cmd
}

func encryptionEnableCommand() *cobra.Command {
	return encryptionChangeCommand("enable", "Encrypt the registry under a customer-managed key (cannot be undone)",
		`  coffer registry encryption enable --key-encryption-key https://team.vault.localhost:5000/keys/registry-cmk --identity 6f1c...`,
		"/enable", "[system]")
}

func encryptionRotateCommand() *cobra.Command {
	return encryptionChangeCommand("rotate-key", "Re-wrap the registry's root key under another key, key version or identity",
		`  coffer registry encryption rotate-key --key-encryption-key https://team.vault.localhost:5000/keys/registry-cmk/0123abcd
  coffer registry encryption rotate-key --key-encryption-key https://team.vault.localhost:5000/keys/registry-cmk --identity [system]`,
		"/rotate-key", "")
}

func encryptionDisableCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "disable",
		Short: "Refused: customer-managed key encryption cannot be disabled once enabled",
		Long: `There is no way back from a customer-managed key: this command exists so that trying
says so, with what to do instead (rotate to another key or identity with 'rotate-key').`,
		Example: `  coffer registry encryption disable   # refused, with the reason`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			return c.do(cmd.Context(), "POST", encryptionPath+"/disable", nil, nil)
		},
	}
}
