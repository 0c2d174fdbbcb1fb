package cli

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/durable"
	"github.com/cofferhq/coffer/internal/imagecrypt"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

func keyPath(v, k string) string {
	return "/coffer/v1/vaults/" + url.PathEscape(v) + "/keys/" + url.PathEscape(k)
}

// keyProtection says where a key's material lives: in an HSM token (named), or in
// software, which a -HSM key of a vault without an HSM is.
func keyProtection(k wire.Key) string {
	if k.Attributes.HSMPlatform != "" {
		return "HSM: " + k.Attributes.HSMPlatform
	}
	return "software"
}

func keyTable(ks ...wire.Key) func() Table {
	return func() Table {
		t := Table{Header: []string{"KID", "TYPE", "SIZE", "ENABLED", "EXPIRES", "OPS", "TAGS", "PROTECTION"}}
		for _, k := range ks {
			exp := ""
			if k.Attributes.Expires != nil {
				exp = k.Attributes.Expires.Format(time.RFC3339)
			}
			var tags []string
			for n, v := range k.Tags {
				tags = append(tags, n+"="+v)
			}
			size := ""
			switch {
			case k.JWK.Crv != "":
				size = k.JWK.Crv
			case k.Size > 0:
				size = strconv.Itoa(k.Size)
			}
			t.Rows = append(t.Rows, []string{k.ID, k.JWK.Kty, size, strconv.FormatBool(k.Attributes.Enabled), exp,
				strings.Join(k.JWK.KeyOps, ","), strings.Join(tags, ","), keyProtection(k)})
		}
		return t
	}
}

func parseTags(list []string) (map[string]string, error) {
	if list == nil {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("tag %q must be NAME=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

func optTime(cmd *cobra.Command, flag string) (*time.Time, error) {
	s, _ := cmd.Flags().GetString(flag)
	if s == "" {
		return nil, nil
	}
	if s == "none" {
		return &time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, fmt.Errorf("--%s: use RFC 3339 (2027-01-02T15:04:05Z) or none", flag)
	}
	return &t, nil
}

func b64arg(cmd *cobra.Command, flag string) (wire.Bytes, error) {
	s, _ := cmd.Flags().GetString(flag)
	if s == "" {
		return nil, nil
	}
	b, err := wire.DecodeBytes(s)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	return b, nil
}

// keyRun makes a command that calls the API with the vault and key names from args.
func keyRun(_ int, fn func(cmd *cobra.Command, c *apiClient, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := newAPIClient(cmd)
		if err != nil {
			return err
		}
		return fn(cmd, c, args)
	}
}

func vaultKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Create, use and manage keys in a vault",
		Long: `Create, use and manage keys in a vault: the same operations as the Azure Key Vault keys
API, through Coffer's management API. Each command needs one key permission, named in its
help: from an access policy ('coffer vault policy set'), or, in a vault created with --rbac,
from a role (Key Vault Crypto Officer manages keys, Key Vault Crypto User uses them).
Network rules apply and every operation is audited ('coffer vault audit list').

Binary values (--value, --digest, --signature, --iv, --aad, --tag) are base64url or
standard base64; results are printed as base64url.`,
		Example: `  coffer vault key create team1 kek --kty RSA --size 3072
  coffer vault key list team1
  coffer vault key wrapKey team1 kek --alg RSA-OAEP-256 --value "$(head -c 32 /dev/urandom | base64)"`,
	}

	create := &cobra.Command{
		Use: "create VAULT NAME", Short: "Create a key (or a new version of it)", Args: cobra.ExactArgs(2),
		Long: `Create a key in a vault; if NAME exists, create a new version of it (the newest version is
the one used by default). Prints the new key version: its kid (the URL the Azure SDK and
the registry take), type, size or curve, allowed operations and tags.

Needs the create key permission (role Key Vault Crypto Officer).`,
		Example: `  coffer vault key create team1 kek --kty RSA --size 3072
  coffer vault key create team1 signer --kty EC --curve P-256 --ops sign,verify
  coffer vault key create team1 data --kty oct-HSM --size 256 --tags owner=ci --expires 2027-12-31T00:00:00Z`,
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			f := cmd.Flags()
			req := wire.CreateKeyRequest{}
			req.Kty, _ = f.GetString("kty")
			req.Size, _ = f.GetInt("size")
			req.Curve, _ = f.GetString("curve")
			req.KeyOps, _ = f.GetStringSlice("ops")
			tl, _ := f.GetStringSlice("tags")
			var err error
			if req.Tags, err = parseTags(tl); err != nil {
				return err
			}
			if req.Expires, err = optTime(cmd, "expires"); err != nil {
				return err
			}
			if req.NotBefore, err = optTime(cmd, "not-before"); err != nil {
				return err
			}
			if f.Changed("disabled") {
				d, _ := f.GetBool("disabled")
				en := !d
				req.Enabled = &en
			}
			var k wire.Key
			if err := c.do(cmd.Context(), "POST", keyPath(args[0], args[1])+"/create", req, &k); err != nil {
				return err
			}
			return printResult(cmd, k, keyTable(k))
		}),
	}
	create.Flags().String("kty", "RSA", "key type: RSA, RSA-HSM, EC, EC-HSM, oct, oct-HSM (HSM kinds live in the HSM in a vault created with --hsm, in software elsewhere)")
	create.Flags().Int("size", 0, "RSA 2048/3072/4096, oct 128/192/256 (default 2048 / 256)")
	create.Flags().String("curve", "", "EC curve: P-256 (default), P-384, P-521")
	create.Flags().StringSlice("ops", nil, "allowed operations (encrypt,decrypt,sign,verify,wrapKey,unwrapKey)")
	create.Flags().StringSlice("tags", nil, "tags NAME=VALUE, comma-separated or repeated")
	create.Flags().String("expires", "", "expiry time (RFC 3339)")
	create.Flags().String("not-before", "", "activation time (RFC 3339)")
	create.Flags().Bool("disabled", false, "create the key disabled")

	importCmd := &cobra.Command{
		Use: "import VAULT NAME (--jwk-file FILE | --pem-file FILE)", Short: "Import a private key given as a JSON Web Key or an RSA PEM", Args: cobra.ExactArgs(2),
		Long: `Import a key you generated elsewhere (bring your own key) as a new version of NAME. The file
holds one JSON Web Key with its private members: RSA (n, e, d, p, q, dp, dq, qi), EC (crv,
x, y, d) or oct (k); or --pem-file, an RSA private key PEM (PKCS#1 or PKCS#8, as
'openssl genrsa' writes it; an encrypted one with --password-file), e.g. the key an image was
encrypted to, so that 'coffer image decrypt --key vault:KEY-URL' unwraps in the vault and
the private key file can be destroyed. Prints the imported key version.

Needs the import key permission (role Key Vault Crypto Officer).`,
		Example: `  coffer vault key import team1 byok --jwk-file ./rsa-private.jwk.json
  coffer vault key import team1 images --pem-file ./private.pem
  coffer vault key import team1 byok-hsm --jwk-file ./ec-private.jwk.json --hsm`,
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			file, _ := cmd.Flags().GetString("jwk-file")
			pemFile, _ := cmd.Flags().GetString("pem-file")
			req := wire.ImportKeyRequest{}
			switch {
			case pemFile != "" && file == "":
				k, err := readRSAPEM(cmd, pemFile)
				if err != nil {
					return err
				}
				req.Key = rsaPrivateJWK(k)
			case file != "" && pemFile == "":
				raw, err := os.ReadFile(file)
				if err != nil {
					return fmt.Errorf("read the JWK: %w", err)
				}
				if err := json.Unmarshal(raw, &req.Key); err != nil {
					return fmt.Errorf("%s is not a JSON Web Key: %w", file, err)
				}
			default:
				return fmt.Errorf("give --jwk-file or --pem-file")
			}
			req.HSM, _ = cmd.Flags().GetBool("hsm")
			var k wire.Key
			if err := c.do(cmd.Context(), "PUT", keyPath(args[0], args[1]), req, &k); err != nil {
				return err
			}
			return printResult(cmd, k, keyTable(k))
		}),
	}
	importCmd.Flags().String("jwk-file", "", "file holding the JWK (with its private members)")
	importCmd.Flags().Bool("hsm", false, "mark the key as an HSM kind (still software-protected)")
	importCmd.Flags().String("pem-file", "", "file holding an RSA private key PEM")
	importCmd.Flags().String("password-file", "", "file holding the password of an encrypted --pem-file")

	download := &cobra.Command{
		Use: "download VAULT NAME --public [--file FILE]", Short: "Write a key's public half as PKIX PEM", Args: cobra.ExactArgs(2),
		Long: `Write the public key of an RSA key version (the newest by default) as a PKIX PEM, the form
skopeo, buildah and podman take as --encryption-key jwe:FILE, so publishers encrypt images to
a key whose private half stays in the vault. Only the public half can be downloaded.

Needs the get key permission (roles Key Vault Crypto User, Key Vault Reader...).`,
		Example: `  coffer vault key download team1 images --public --file pub.pem
  skopeo copy --encryption-key jwe:pub.pem oci:./app:v1 docker://localhost:5000/team/app:enc`,
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			if pub, _ := cmd.Flags().GetBool("public"); !pub {
				return fmt.Errorf("give --public: a private key never leaves the vault")
			}
			v, _ := cmd.Flags().GetString("version")
			var k wire.Key
			if err := c.do(cmd.Context(), "GET", keyPath(args[0], args[1])+"?version="+url.QueryEscape(v), nil, &k); err != nil {
				return err
			}
			pemBytes, err := imagecrypt.PublicKeyPEM(k.JWK.N, k.JWK.E)
			if err != nil {
				return fmt.Errorf("key %s is of type %s: %w", k.ID, k.JWK.Kty, err)
			}
			file, _ := cmd.Flags().GetString("file")
			if file == "" {
				if f, _ := cmd.Flags().GetString("output"); f == "json" {
					return printResult(cmd, map[string]string{"kid": k.ID, "publicKeyPem": string(pemBytes)}, nil)
				}
				_, err = cmd.OutOrStdout().Write(pemBytes)
				return err
			}
			if err := os.WriteFile(file, pemBytes, 0o644); err != nil {
				return err
			}
			return printResult(cmd, map[string]string{"kid": k.ID, "file": file}, nil)
		}),
	}
	download.Flags().Bool("public", false, "download the public key (the only form offered)")
	download.Flags().String("version", "", "key version (default: the newest)")
	download.Flags().String("file", "", "write to FILE instead of stdout")

	show := &cobra.Command{
		Use: "show VAULT NAME", Short: "Show a key version (the newest by default)", Args: cobra.ExactArgs(2),
		Long: `Show a key version's public part and attributes: kid, type, size or curve, whether it is
enabled, expiry, allowed operations and tags. -o json prints the whole key, public JWK
included; private key material is never shown.

Needs the get key permission (roles Key Vault Crypto User, Key Vault Reader...).`,
		Example: `  coffer vault key show team1 kek
  coffer vault key show team1 kek --version 78b77c4b3f110bd0349a224fb1778f41 -o json`,
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			v, _ := cmd.Flags().GetString("version")
			var k wire.Key
			if err := c.do(cmd.Context(), "GET", keyPath(args[0], args[1])+"?version="+url.QueryEscape(v), nil, &k); err != nil {
				return err
			}
			return printResult(cmd, k, keyTable(k))
		}),
	}
	show.Flags().String("version", "", "key version (default: the newest)")

	listAll := func(cmd *cobra.Command, c *apiClient, path string) ([]wire.Key, error) {
		var all []wire.Key
		skip := ""
		for {
			var page wire.KeyList
			if err := c.do(cmd.Context(), "GET", path+"?skiptoken="+url.QueryEscape(skip), nil, &page); err != nil {
				return nil, err
			}
			all = append(all, page.Value...)
			if page.SkipToken == "" {
				return all, nil
			}
			skip = page.SkipToken
		}
	}
	list := &cobra.Command{
		Use: "list VAULT", Short: "List a vault's keys (newest versions)", Args: cobra.ExactArgs(1),
		Long: `List a vault's keys, one row per key with its newest version. Deleted keys are not listed
('coffer vault key list-deleted').

Needs the list key permission (roles Key Vault Crypto User, Key Vault Reader...).`,
		Example: `  coffer vault key list team1
  coffer vault key list team1 -o json`,
		RunE: keyRun(1, func(cmd *cobra.Command, c *apiClient, args []string) error {
			ks, err := listAll(cmd, c, "/coffer/v1/vaults/"+url.PathEscape(args[0])+"/keys")
			if err != nil {
				return err
			}
			return printResult(cmd, ks, keyTable(ks...))
		}),
	}
	versions := &cobra.Command{
		Use: "versions VAULT NAME", Short: "List a key's versions", Args: cobra.ExactArgs(2),
		Long: `List every version of a key (older versions still decrypt, unwrap and verify what they
produced).

Needs the list key permission (roles Key Vault Crypto User, Key Vault Reader...).`,
		Example: `  coffer vault key versions team1 kek
  coffer vault key versions team1 kek -o json`,
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			ks, err := listAll(cmd, c, keyPath(args[0], args[1])+"/versions")
			if err != nil {
				return err
			}
			return printResult(cmd, ks, keyTable(ks...))
		}),
	}

	update := &cobra.Command{
		Use: "update VAULT NAME", Short: "Change a key version's attributes (only the flags given)", Args: cobra.ExactArgs(2),
		Long: `Change a key version's attributes: enable or disable it, its allowed operations, tags
(--tags replaces them all), expiry and activation time. Only the flags given change.
Prints the updated key version.

Needs the update key permission (role Key Vault Crypto Officer).`,
		Example: `  coffer vault key update team1 kek --enabled=false
  coffer vault key update team1 kek --tags env=prod,owner=ci --expires 2027-12-31T00:00:00Z
  coffer vault key update team1 kek --version 78b77c4b3f110bd0349a224fb1778f41 --expires none`,
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			f := cmd.Flags()
			var req wire.UpdateKeyRequest
			if f.Changed("enabled") {
				e, _ := f.GetBool("enabled")
				req.Enabled = &e
			}
			if f.Changed("ops") {
				req.KeyOps, _ = f.GetStringSlice("ops")
			}
			if f.Changed("tags") {
				tl, _ := f.GetStringSlice("tags")
				tags, err := parseTags(tl)
				if err != nil {
					return err
				}
				if tags == nil {
					tags = map[string]string{}
				}
				req.Tags = &tags
			}
			var err error
			if req.Expires, err = optTime(cmd, "expires"); err != nil {
				return err
			}
			if req.NotBefore, err = optTime(cmd, "not-before"); err != nil {
				return err
			}
			v, _ := f.GetString("version")
			var k wire.Key
			if err := c.do(cmd.Context(), "PATCH", keyPath(args[0], args[1])+"?version="+url.QueryEscape(v), req, &k); err != nil {
				return err
			}
			return printResult(cmd, k, keyTable(k))
		}),
	}
	update.Flags().String("version", "", "key version (default: the newest)")
	update.Flags().Bool("enabled", true, "enable or disable (--enabled=false)")
	update.Flags().StringSlice("ops", nil, "allowed operations (encrypt,decrypt,sign,verify,wrapKey,unwrapKey)")
	update.Flags().StringSlice("tags", nil, "tags NAME=VALUE (replaces all tags)")
	update.Flags().String("expires", "", "expiry time (RFC 3339), or none")
	update.Flags().String("not-before", "", "activation time (RFC 3339), or none")

	simple := func(use, short, method, suffix string, deleted bool) *cobra.Command {
		return &cobra.Command{
			Use: use + " VAULT NAME", Short: short, Args: cobra.ExactArgs(2),
			RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
				path := keyPath(args[0], args[1]) + suffix
				if deleted {
					path = "/coffer/v1/vaults/" + url.PathEscape(args[0]) + "/deletedkeys/" + url.PathEscape(args[1]) + suffix
				}
				var out json.RawMessage
				if err := c.do(cmd.Context(), method, path, nil, &out); err != nil {
					return err
				}
				if len(out) == 0 {
					return printDone(cmd, map[string]string{"vault": args[0], "key": args[1], "done": use},
						fmt.Sprintf("%s: done for key %s in vault %s", use, args[1], args[0]))
				}
				var k wire.Key
				_ = json.Unmarshal(out, &k) // the table is best effort; -o json prints out as is
				return printResult(cmd, out, keyTable(k))
			}),
		}
	}
	del := simple("delete", "Delete a key (soft delete: recoverable until its purge date)", "DELETE", "", false)
	recoverCmd := simple("recover", "Recover a deleted key", "POST", "/recover", true)
	purge := simple("purge", "Destroy a deleted key for good (refused under purge protection)", "DELETE", "", true)
	rotate := simple("rotate", "Create a new version of a key", "POST", "/rotate", false)
	del.Long = `Delete a key, all its versions. The key can be recovered ('coffer vault key recover')
until its scheduled purge date (the vault's retention days later), then it is purged.
Prints the deleted key, with its recovery id and purge date in -o json.

Needs the delete key permission (role Key Vault Crypto Officer).`
	del.Example = `  coffer vault key delete team1 kek
  coffer vault key delete team1 kek -o json`
	recoverCmd.Long = `Recover a deleted key, all its versions, before its purge date. Prints the recovered key.

Needs the recover key permission (role Key Vault Crypto Officer).`
	recoverCmd.Example = `  coffer vault key list-deleted team1
  coffer vault key recover team1 kek`
	purge.Long = `Destroy a deleted key and all its versions for good: what it encrypted or wrapped can no
longer be decrypted. The key must be deleted first; a vault with purge protection refuses
until the purge date. Prints nothing to keep (-o json: {"vault","key","done":"purge"}).

Needs the purge key permission (role Key Vault Crypto Officer).`
	purge.Example = `  coffer vault key delete team1 old-kek
  coffer vault key purge team1 old-kek`
	rotate.Long = `Create a new version of a key with the same type, size or curve, operations and tags
(the lifetime from its rotation policy applies). New operations use the new version;
older versions still decrypt, unwrap and verify. Prints the new version.

Needs the rotate key permission (role Key Vault Crypto Officer).`
	rotate.Example = `  coffer vault key rotate team1 kek
  coffer vault key rotate team1 kek -o json`
	listDeleted := &cobra.Command{
		Use: "list-deleted VAULT", Short: "List deleted keys", Args: cobra.ExactArgs(1),
		Long: `List a vault's deleted keys with the time they were deleted and the date they will be
purged. Recover one with 'coffer vault key recover', destroy it now with 'coffer vault
key purge'.

Needs the list key permission (roles Key Vault Crypto User, Key Vault Reader...).`,
		Example: `  coffer vault key list-deleted team1
  coffer vault key list-deleted team1 -o json`,
		RunE: keyRun(1, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var out wire.DeletedKeyList
			if err := c.do(cmd.Context(), "GET", "/coffer/v1/vaults/"+url.PathEscape(args[0])+"/deletedkeys", nil, &out); err != nil {
				return err
			}
			return printResult(cmd, out.Value, func() Table {
				t := Table{Header: []string{"KID", "DELETED", "PURGE DATE"}}
				for _, d := range out.Value {
					t.Rows = append(t.Rows, []string{d.ID, d.DeletedDate.Format(time.RFC3339), d.ScheduledPurgeDate.Format(time.RFC3339)})
				}
				return t
			})
		}),
	}

	policy := &cobra.Command{
		Use:   "rotation-policy",
		Short: "Show or set a key's rotation policy",
		Long: `A key's rotation policy makes the server rotate it (create a new version) a set time after
the newest version was created or before it expires, records a notification before
expiry, and gives new versions a lifetime. Times are ISO 8601 durations: P30D, P3M, P1Y,
PT12H.`,
	}
	policyShow := &cobra.Command{
		Use: "show VAULT NAME", Args: cobra.ExactArgs(2), Short: "Show the rotation policy",
		Long: `Show a key's rotation policy: its lifetime actions (Rotate or Notify, and when) and the
expiry given to new versions. A key whose policy was never set shows the default: Notify
30 days before expiry.

Needs the getrotationpolicy key permission (roles Key Vault Crypto Officer, Key Vault Reader).`,
		Example: `  coffer vault key rotation-policy show team1 kek
  coffer vault key rotation-policy show team1 kek -o json`,
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var p wire.RotationPolicy
			if err := c.do(cmd.Context(), "GET", keyPath(args[0], args[1])+"/rotationpolicy", nil, &p); err != nil {
				return err
			}
			return printResult(cmd, p, rotationPolicyTable(p))
		}),
	}
	policySet := &cobra.Command{
		Use: "set VAULT NAME", Args: cobra.ExactArgs(2), Short: "Set the rotation policy (ISO 8601 durations: P30D, P3M, PT12H)",
		Long: `Set (replace) a key's rotation policy. Give --rotate-after-create or --rotate-before-expiry
(not both) for automatic rotation, --notify-before-expiry for a notification in the
audit trail, and --expiry for the lifetime of new versions. With no flags the policy is
cleared (no actions, not even the default notification). Prints the policy as stored.

Needs the setrotationpolicy key permission (role Key Vault Crypto Officer).`,
		Example: `  coffer vault key rotation-policy set team1 kek --rotate-after-create P90D --expiry P1Y
  coffer vault key rotation-policy set team1 kek --rotate-before-expiry P30D --notify-before-expiry P7D --expiry P6M
  coffer vault key rotation-policy set team1 kek    # clear the policy`,
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var p wire.RotationPolicy
			after, _ := cmd.Flags().GetString("rotate-after-create")
			before, _ := cmd.Flags().GetString("rotate-before-expiry")
			notify, _ := cmd.Flags().GetString("notify-before-expiry")
			p.Attributes.ExpiryTime, _ = cmd.Flags().GetString("expiry")
			if after != "" || before != "" {
				var la wire.LifetimeAction
				la.Action.Type = "Rotate"
				la.Trigger.TimeAfterCreate, la.Trigger.TimeBeforeExpiry = after, before
				p.LifetimeActions = append(p.LifetimeActions, la)
			}
			if notify != "" {
				var la wire.LifetimeAction
				la.Action.Type = "Notify"
				la.Trigger.TimeBeforeExpiry = notify
				p.LifetimeActions = append(p.LifetimeActions, la)
			}
			var out wire.RotationPolicy
			if err := c.do(cmd.Context(), "PUT", keyPath(args[0], args[1])+"/rotationpolicy", p, &out); err != nil {
				return err
			}
			return printResult(cmd, out, rotationPolicyTable(out))
		}),
	}
	policySet.Flags().String("rotate-after-create", "", "rotate this long after the newest version was created")
	policySet.Flags().String("rotate-before-expiry", "", "rotate this long before the newest version expires")
	policySet.Flags().String("notify-before-expiry", "", "record a notification this long before expiry")
	policySet.Flags().String("expiry", "", "lifetime of new versions (their expiry is this long after creation)")
	policy.AddCommand(policyShow, policySet)

	backup := &cobra.Command{
		Use: "backup VAULT NAME --file FILE", Short: "Write an encrypted backup of every version of a key", Args: cobra.ExactArgs(2),
		Long: `Write a backup of a key, every version and its attributes, to FILE (mode 0600). The backup
is sealed by the server: only a Coffer server holding the same vault root key can restore
it ('coffer vault key restore'), and a changed backup is refused.

Needs the backup key permission (role Key Vault Crypto Officer).`,
		Example: `  coffer vault key backup team1 kek --file kek.backup`,
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			file, _ := cmd.Flags().GetString("file")
			if file == "" {
				return fmt.Errorf("give --file")
			}
			var out wire.KeyBackup
			if err := c.do(cmd.Context(), "POST", keyPath(args[0], args[1])+"/backup", nil, &out); err != nil {
				return err
			}
			if err := durable.WriteFile(file, []byte(base64.RawURLEncoding.EncodeToString(out.Value)), 0o600); err != nil {
				return err
			}
			return printDone(cmd, map[string]string{"vault": args[0], "key": args[1], "file": file},
				fmt.Sprintf("backup of %s written to %s", args[1], file))
		}),
	}
	backup.Flags().String("file", "", "backup file to write")
	restore := &cobra.Command{
		Use: "restore VAULT --file FILE", Short: "Restore a key from a backup", Args: cobra.ExactArgs(1),
		Long: `Restore a key, with all its versions, from a file written by 'coffer vault key backup'. A
key of that name must not exist in the vault (purge a deleted one first). Prints the
restored key.

Needs the restore key permission (role Key Vault Crypto Officer).`,
		Example: `  coffer vault key restore team1 --file kek.backup
  coffer vault key restore team1-dr --file kek.backup -o json`,
		RunE: keyRun(1, func(cmd *cobra.Command, c *apiClient, args []string) error {
			file, _ := cmd.Flags().GetString("file")
			if file == "" {
				return fmt.Errorf("give --file")
			}
			raw, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			blob, err := wire.DecodeBytes(strings.TrimSpace(string(raw)))
			if err != nil {
				return fmt.Errorf("%s is not a backup: %w", file, err)
			}
			var k wire.Key
			if err := c.do(cmd.Context(), "POST", "/coffer/v1/vaults/"+url.PathEscape(args[0])+"/restore", wire.KeyBackup{Value: blob}, &k); err != nil {
				return err
			}
			return printResult(cmd, k, keyTable(k))
		}),
	}
	restore.Flags().String("file", "", "backup file written by 'coffer vault key backup'")

	op := func(name, short, long, example string) *cobra.Command {
		use := name + " VAULT NAME --alg ALG --value BASE64"
		switch name {
		case "sign":
			use = name + " VAULT NAME --alg ALG --digest BASE64"
		case "verify":
			use = name + " VAULT NAME --alg ALG --digest BASE64 --signature BASE64"
		}
		var aliases []string
		for _, a := range []string{strings.ToLower(name), strings.TrimSuffix(strings.ToLower(name), "key")} {
			if a != name && !slices.Contains(aliases, a) {
				aliases = append(aliases, a)
			}
		}
		c := &cobra.Command{
			Use: use, Short: short, Long: long, Example: example, Args: cobra.ExactArgs(2),
			Aliases: aliases,
			RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
				var req wire.KeyOpRequest
				var err error
				req.Version, _ = cmd.Flags().GetString("version")
				req.Alg, _ = cmd.Flags().GetString("alg")
				for flag, dst := range map[string]*wire.Bytes{"value": &req.Value, "iv": &req.IV, "aad": &req.AAD, "tag": &req.Tag, "digest": &req.Digest, "signature": &req.Signature} {
					if cmd.Flags().Lookup(flag) == nil {
						continue
					}
					if *dst, err = b64arg(cmd, flag); err != nil {
						return err
					}
				}
				var out wire.KeyOpResult
				if err := c.do(cmd.Context(), "POST", keyPath(args[0], args[1])+"/"+strings.ToLower(name), req, &out); err != nil {
					return err
				}
				return printResult(cmd, out, func() Table {
					t := Table{Rows: [][]string{{"kid:", out.Kid}}}
					if out.Verified != nil {
						t.Rows = append(t.Rows, []string{"verified:", strconv.FormatBool(*out.Verified)})
					} else {
						t.Rows = append(t.Rows, []string{"value:", base64.RawURLEncoding.EncodeToString(out.Value)})
					}
					if len(out.IV) > 0 {
						t.Rows = append(t.Rows, []string{"iv:", base64.RawURLEncoding.EncodeToString(out.IV)}, []string{"tag:", base64.RawURLEncoding.EncodeToString(out.Tag)})
					}
					return t
				})
			}),
		}
		c.Flags().String("version", "", "key version (default: the newest enabled one)")
		c.Flags().String("alg", "", "algorithm (RSA-OAEP, RSA-OAEP-256, RSA1_5, A256KW, A256GCM, RS256, PS256, ES256...)")
		switch name {
		case "sign":
			c.Flags().String("digest", "", "digest to sign (base64url or base64): the hash of the data, SHA-256 for RS256/PS256/ES256")
		case "verify":
			c.Flags().String("digest", "", "signed digest (base64url or base64)")
			c.Flags().String("signature", "", "signature (base64url or base64)")
		default:
			c.Flags().String("value", "", "input bytes (base64url or base64)")
			c.Flags().String("iv", "", "IV (AES-GCM/CBC decrypt; base64url or base64)")
			c.Flags().String("aad", "", "additional authenticated data (AES-GCM; base64url or base64)")
			c.Flags().String("tag", "", "authentication tag (AES-GCM decrypt; base64url or base64)")
		}
		return c
	}

	cmd.AddCommand(create, importCmd, download, show, list, versions, update, del, recoverCmd, purge, listDeleted, rotate, policy, backup, restore,
		op("wrapKey", "Wrap (encrypt) a key, such as a data-encryption key, with a vault key", `Wrap a key with a vault key: RSA keys take RSA-OAEP, RSA-OAEP-256 or RSA1_5, oct keys
A128KW, A192KW or A256KW. --value is the key to wrap. Prints the kid of the key version used
(keep it: unwrap with that version) and the wrapped key (value, base64url).

Needs the wrapKey key permission (roles Key Vault Crypto User, Key Vault Crypto Service
Encryption User).`, `  coffer vault key wrapKey team1 kek --alg RSA-OAEP-256 --value "$(head -c 32 /dev/urandom | base64)"
  coffer vault key wrap team1 kek --alg RSA-OAEP-256 --value AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 -o json`),
		op("unwrapKey", "Unwrap (decrypt) a key wrapped with wrapKey", `Unwrap a key wrapped by 'coffer vault key wrapKey', with the same algorithm and key version
(--version: the version from the wrap's kid; the newest by default). Prints the
unwrapped key (value, base64url).

Needs the unwrapKey key permission (roles Key Vault Crypto User, Key Vault Crypto Service
Encryption User).`, `  coffer vault key unwrapKey team1 kek --alg RSA-OAEP-256 --version 78b77c4b3f110bd0349a224fb1778f41 --value "$WRAPPED"
  coffer vault key unwrap team1 kek --alg RSA-OAEP-256 --value "$WRAPPED" -o json`),
		op("encrypt", "Encrypt a few bytes with a vault key", `Encrypt a small value with a vault key: RSA keys take RSA-OAEP, RSA-OAEP-256 or RSA1_5, oct
keys A128GCM/A192GCM/A256GCM or A128CBCPAD/A192CBCPAD/A256CBCPAD. Prints the kid of the
version used and the ciphertext (value), and for AES-GCM the generated iv and tag that
decrypt needs (all base64url).

Needs the encrypt key permission (role Key Vault Crypto User).`, `  coffer vault key encrypt team1 kek --alg RSA-OAEP-256 --value "$(printf 'hello' | base64)"
  coffer vault key encrypt team1 data --alg A256GCM --value aGVsbG8 --aad Y29udGV4dA -o json`),
		op("decrypt", "Decrypt what encrypt produced", `Decrypt a value produced by 'coffer vault key encrypt' with the same algorithm and key
version (--version; the newest by default). AES-GCM also takes the --iv and --tag (and
--aad) of the encryption. Prints the plaintext (value, base64url).

Needs the decrypt key permission (role Key Vault Crypto User).`, `  coffer vault key decrypt team1 kek --alg RSA-OAEP-256 --value "$CIPHERTEXT"
  coffer vault key decrypt team1 data --alg A256GCM --value "$CIPHERTEXT" --iv "$IV" --tag "$TAG" --aad Y29udGV4dA`),
		op("sign", "Sign a digest with a vault key", `Sign a digest (the hash of the data, computed by you) with an RSA or EC key: RS256, RS384,
RS512, PS256, PS384, PS512 for RSA; ES256 (P-256), ES384 (P-384), ES512 (P-521) for EC.
The digest's hash must match the algorithm (SHA-256 for *256). Prints the kid of the
version used and the signature (value, base64url).

Needs the sign key permission (role Key Vault Crypto User).`, `  coffer vault key sign team1 signer --alg ES256 --digest "$(openssl dgst -sha256 -binary release.tar | base64)"
  coffer vault key sign team1 kek --alg PS256 --digest "$(sha256sum release.tar | cut -d' ' -f1 | xxd -r -p | base64)" -o json`),
		op("verify", "Verify a signature made with sign", `Verify a signature made by 'coffer vault key sign' over a digest, with the same algorithm
and key version (--version; the newest by default). Prints verified: true or false (the
command succeeds either way; check the value, or "verified" in -o json).

Needs the verify key permission (role Key Vault Crypto User).`, `  coffer vault key verify team1 signer --alg ES256 --digest "$DIGEST" --signature "$SIGNATURE"
  coffer vault key verify team1 signer --alg ES256 --digest "$DIGEST" --signature "$SIGNATURE" -o json`))
	return cmd
}

func rotationPolicyTable(p wire.RotationPolicy) func() Table {
	return func() Table {
		t := Table{Header: []string{"ACTION", "AFTER CREATE", "BEFORE EXPIRY"}}
		for _, la := range p.LifetimeActions {
			t.Rows = append(t.Rows, []string{la.Action.Type, la.Trigger.TimeAfterCreate, la.Trigger.TimeBeforeExpiry})
		}
		if len(p.LifetimeActions) == 0 {
			t.Rows = append(t.Rows, []string{"(none)", "", ""})
		}
		exp := p.Attributes.ExpiryTime
		if exp == "" {
			exp = "(none)"
		}
		t.Rows = append(t.Rows, []string{}, []string{"expiry of new versions:", exp, ""})
		return t
	}
}

// readRSAPEM reads an RSA private key PEM (and its password from --password-file).
func readRSAPEM(cmd *cobra.Command, file string) (*rsa.PrivateKey, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read the PEM: %w", err)
	}
	var pw []byte
	if pf, _ := cmd.Flags().GetString("password-file"); pf != "" {
		b, err := os.ReadFile(pf)
		if err != nil {
			return nil, fmt.Errorf("read the password: %w", err)
		}
		pw = []byte(strings.TrimRight(string(b), "\r\n"))
	}
	k, err := imagecrypt.ParseRSAPrivateKey(raw, pw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return k, nil
}

// rsaPrivateJWK is an RSA private key as the JWK that the vault imports.
func rsaPrivateJWK(k *rsa.PrivateKey) wire.JWK {
	k.Precompute()
	return wire.JWK{Kty: "RSA", N: k.N.Bytes(), E: big.NewInt(int64(k.E)).Bytes(), D: k.D.Bytes(), P: k.Primes[0].Bytes(), Q: k.Primes[1].Bytes(),
		DP: k.Precomputed.Dp.Bytes(), DQ: k.Precomputed.Dq.Bytes(), QI: k.Precomputed.Qinv.Bytes()}
}
