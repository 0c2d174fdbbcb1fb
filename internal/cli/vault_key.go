package cli

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/durable"
	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/api"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

func keyPath(v, k string) string {
	return "/coffer/v1/vaults/" + url.PathEscape(v) + "/keys/" + url.PathEscape(k)
}

func keyTable(ks ...vault.Key) func() Table {
	return func() Table {
		t := Table{Header: []string{"KID", "TYPE", "SIZE", "ENABLED", "EXPIRES", "OPS", "TAGS"}}
		for _, k := range ks {
			exp := ""
			if k.Attributes.Expires != nil {
				exp = k.Attributes.Expires.Format(time.RFC3339)
			}
			var tags []string
			for n, v := range k.Tags {
				tags = append(tags, n+"="+v)
			}
			size := strconv.Itoa(k.Size)
			if k.JWK.Crv != "" {
				size = k.JWK.Crv
			}
			t.Rows = append(t.Rows, []string{k.ID, k.JWK.Kty, size, strconv.FormatBool(k.Attributes.Enabled), exp,
				strings.Join(k.JWK.KeyOps, ","), strings.Join(tags, ",")})
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

func b64arg(cmd *cobra.Command, flag string) (keys.B64, error) {
	s, _ := cmd.Flags().GetString(flag)
	if s == "" {
		return nil, nil
	}
	b, err := keys.DecodeB64(s)
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
	cmd := &cobra.Command{Use: "key", Short: "Create, use and manage keys in a vault"}

	create := &cobra.Command{
		Use: "create VAULT NAME", Short: "Create a key (or a new version of it)", Args: cobra.ExactArgs(2),
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			f := cmd.Flags()
			req := api.CreateKeyRequest{}
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
			var k vault.Key
			if err := c.do(cmd.Context(), "POST", keyPath(args[0], args[1])+"/create", req, &k); err != nil {
				return err
			}
			return printResult(cmd, k, keyTable(k))
		}),
	}
	create.Flags().String("kty", "RSA", "key type: RSA, RSA-HSM, EC, EC-HSM, oct, oct-HSM (HSM kinds are software-protected)")
	create.Flags().Int("size", 0, "RSA 2048/3072/4096, oct 128/192/256 (default 2048 / 256)")
	create.Flags().String("curve", "", "EC curve: P-256 (default), P-384, P-521")
	create.Flags().StringSlice("ops", nil, "allowed operations (encrypt,decrypt,sign,verify,wrapKey,unwrapKey)")
	create.Flags().StringSlice("tags", nil, "tags NAME=VALUE")
	create.Flags().String("expires", "", "expiry time (RFC 3339)")
	create.Flags().String("not-before", "", "activation time (RFC 3339)")
	create.Flags().Bool("disabled", false, "create the key disabled")

	importCmd := &cobra.Command{
		Use: "import VAULT NAME --jwk-file FILE", Short: "Import a private key given as a JSON Web Key", Args: cobra.ExactArgs(2),
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			file, _ := cmd.Flags().GetString("jwk-file")
			raw, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("read the JWK: %w", err)
			}
			req := api.ImportKeyRequest{}
			if err := json.Unmarshal(raw, &req.Key); err != nil {
				return fmt.Errorf("%s is not a JSON Web Key: %w", file, err)
			}
			req.HSM, _ = cmd.Flags().GetBool("hsm")
			var k vault.Key
			if err := c.do(cmd.Context(), "PUT", keyPath(args[0], args[1]), req, &k); err != nil {
				return err
			}
			return printResult(cmd, k, keyTable(k))
		}),
	}
	importCmd.Flags().String("jwk-file", "", "file holding the JWK (with its private members)")
	importCmd.Flags().Bool("hsm", false, "mark the key as an HSM kind (still software-protected)")

	show := &cobra.Command{
		Use: "show VAULT NAME", Short: "Show a key version (the newest by default)", Args: cobra.ExactArgs(2),
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			v, _ := cmd.Flags().GetString("version")
			var k vault.Key
			if err := c.do(cmd.Context(), "GET", keyPath(args[0], args[1])+"?version="+url.QueryEscape(v), nil, &k); err != nil {
				return err
			}
			return printResult(cmd, k, keyTable(k))
		}),
	}
	show.Flags().String("version", "", "key version")

	listAll := func(cmd *cobra.Command, c *apiClient, path string) ([]vault.Key, error) {
		var all []vault.Key
		skip := ""
		for {
			var page api.KeyListPage
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
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			f := cmd.Flags()
			var req api.UpdateKeyRequest
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
			var k vault.Key
			if err := c.do(cmd.Context(), "PATCH", keyPath(args[0], args[1])+"?version="+url.QueryEscape(v), req, &k); err != nil {
				return err
			}
			return printResult(cmd, k, keyTable(k))
		}),
	}
	update.Flags().String("version", "", "key version (default: the newest)")
	update.Flags().Bool("enabled", true, "enable or disable (--enabled=false)")
	update.Flags().StringSlice("ops", nil, "allowed operations")
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
					fmt.Fprintf(cmd.OutOrStdout(), "%s: done\n", use)
					return nil
				}
				var k vault.Key
				json.Unmarshal(out, &k)
				return printResult(cmd, out, keyTable(k))
			}),
		}
	}
	del := simple("delete", "Delete a key (soft delete: recoverable until its purge date)", "DELETE", "", false)
	recoverCmd := simple("recover", "Recover a deleted key", "POST", "/recover", true)
	purge := simple("purge", "Destroy a deleted key for good (refused under purge protection)", "DELETE", "", true)
	rotate := simple("rotate", "Create a new version of a key", "POST", "/rotate", false)
	listDeleted := &cobra.Command{
		Use: "list-deleted VAULT", Short: "List deleted keys", Args: cobra.ExactArgs(1),
		RunE: keyRun(1, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var out struct {
				Value []vault.DeletedKey `json:"value"`
			}
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

	policy := &cobra.Command{Use: "rotation-policy", Short: "Show or set a key's rotation policy"}
	policyShow := &cobra.Command{
		Use: "show VAULT NAME", Args: cobra.ExactArgs(2), Short: "Show the rotation policy",
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var p vault.RotationPolicy
			if err := c.do(cmd.Context(), "GET", keyPath(args[0], args[1])+"/rotationpolicy", nil, &p); err != nil {
				return err
			}
			return printResult(cmd, p, nil)
		}),
	}
	policySet := &cobra.Command{
		Use: "set VAULT NAME", Args: cobra.ExactArgs(2), Short: "Set the rotation policy (ISO 8601 durations: P30D, P3M, PT12H)",
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var p vault.RotationPolicy
			after, _ := cmd.Flags().GetString("rotate-after-create")
			before, _ := cmd.Flags().GetString("rotate-before-expiry")
			notify, _ := cmd.Flags().GetString("notify-before-expiry")
			p.Attributes.ExpiryTime, _ = cmd.Flags().GetString("expiry")
			if after != "" || before != "" {
				var la vault.LifetimeAction
				la.Action.Type = "Rotate"
				la.Trigger.TimeAfterCreate, la.Trigger.TimeBeforeExpiry = after, before
				p.LifetimeActions = append(p.LifetimeActions, la)
			}
			if notify != "" {
				var la vault.LifetimeAction
				la.Action.Type = "Notify"
				la.Trigger.TimeBeforeExpiry = notify
				p.LifetimeActions = append(p.LifetimeActions, la)
			}
			var out vault.RotationPolicy
			if err := c.do(cmd.Context(), "PUT", keyPath(args[0], args[1])+"/rotationpolicy", p, &out); err != nil {
				return err
			}
			return printResult(cmd, out, nil)
		}),
	}
	policySet.Flags().String("rotate-after-create", "", "rotate this long after the newest version was created")
	policySet.Flags().String("rotate-before-expiry", "", "rotate this long before the newest version expires")
	policySet.Flags().String("notify-before-expiry", "", "record a notification this long before expiry")
	policySet.Flags().String("expiry", "", "lifetime of new versions")
	policy.AddCommand(policyShow, policySet)

	backup := &cobra.Command{
		Use: "backup VAULT NAME --file FILE", Short: "Write an encrypted backup of every version of a key", Args: cobra.ExactArgs(2),
		RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
			file, _ := cmd.Flags().GetString("file")
			if file == "" {
				return fmt.Errorf("give --file")
			}
			var out struct {
				Value keys.B64 `json:"value"`
			}
			if err := c.do(cmd.Context(), "POST", keyPath(args[0], args[1])+"/backup", nil, &out); err != nil {
				return err
			}
			if err := durable.WriteFile(file, []byte(base64.RawURLEncoding.EncodeToString(out.Value)), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup of %s written to %s\n", args[1], file)
			return nil
		}),
	}
	backup.Flags().String("file", "", "backup file to write")
	restore := &cobra.Command{
		Use: "restore VAULT --file FILE", Short: "Restore a key from a backup", Args: cobra.ExactArgs(1),
		RunE: keyRun(1, func(cmd *cobra.Command, c *apiClient, args []string) error {
			file, _ := cmd.Flags().GetString("file")
			raw, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			blob, err := keys.DecodeB64(strings.TrimSpace(string(raw)))
			if err != nil {
				return fmt.Errorf("%s is not a backup: %w", file, err)
			}
			var k vault.Key
			if err := c.do(cmd.Context(), "POST", "/coffer/v1/vaults/"+url.PathEscape(args[0])+"/restore", map[string]any{"value": keys.B64(blob)}, &k); err != nil {
				return err
			}
			return printResult(cmd, k, keyTable(k))
		}),
	}
	restore.Flags().String("file", "", "backup file")

	op := func(name, short string) *cobra.Command {
		c := &cobra.Command{
			Use: name + " VAULT NAME --alg ALG --value BASE64URL", Short: short, Args: cobra.ExactArgs(2),
			Aliases: []string{strings.ToLower(name), strings.TrimSuffix(strings.ToLower(name), "key")},
			RunE: keyRun(2, func(cmd *cobra.Command, c *apiClient, args []string) error {
				var req api.KeyOpRequest
				var err error
				req.Version, _ = cmd.Flags().GetString("version")
				req.Alg, _ = cmd.Flags().GetString("alg")
				for flag, dst := range map[string]*keys.B64{"value": &req.Value, "iv": &req.IV, "aad": &req.AAD, "tag": &req.Tag, "digest": &req.Digest, "signature": &req.Signature} {
					if cmd.Flags().Lookup(flag) == nil {
						continue
					}
					if *dst, err = b64arg(cmd, flag); err != nil {
						return err
					}
				}
				var out api.KeyOpResult
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
			c.Flags().String("digest", "", "digest to sign (base64url)")
		case "verify":
			c.Flags().String("digest", "", "signed digest (base64url)")
			c.Flags().String("signature", "", "signature (base64url)")
		default:
			c.Flags().String("value", "", "input bytes (base64url)")
			c.Flags().String("iv", "", "IV (AES-GCM/CBC decrypt)")
			c.Flags().String("aad", "", "additional authenticated data (AES-GCM)")
			c.Flags().String("tag", "", "authentication tag (AES-GCM decrypt)")
		}
		return c
	}

	cmd.AddCommand(create, importCmd, show, list, versions, update, del, recoverCmd, purge, listDeleted, rotate, policy, backup, restore,
		op("wrapKey", "Wrap a key"), op("unwrapKey", "Unwrap a key"), op("encrypt", "Encrypt"), op("decrypt", "Decrypt"),
		op("sign", "Sign a digest"), op("verify", "Verify a signature"))
	return cmd
}
