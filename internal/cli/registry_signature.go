package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// signatureCommand is `coffer registry signature`: trust anchors and the signature
// policy (docs/signatures.md).
func signatureCommand() *cobra.Command {
	sig := &cobra.Command{
		Use:   "signature",
		Short: "Trust anchors and the signature policy: pulls of unverified images audited or refused",
		Long: `Coffer verifies notation (Notary Project) and cosign signatures stored in the registry
and, per repository or prefix, lets every pull through (off, the default), lets it through
but counts and audits unverified pulls (audit), or refuses a manifest GET or HEAD of an
image with no signature that verifies (enforce: 403 DENIED saying which policy refused it
and why). Anchors are notation trust stores (X.509 certificates) and cosign public keys.
Writes need access/manage at /registry (Owner); reads access/read (Owner, Contributor,
Reader).`,
		Example: `  coffer registry signature anchor add team-ca --kind notation --file ca.pem
  coffer registry signature anchor add ci --kind cosign --file cosign.pub
  coffer registry signature policy set --file policy.json
  coffer registry signature policy show -o json
  coffer registry signature verify team/app:v1`,
	}
	sig.AddCommand(signatureAnchorCommand(), signaturePolicyCommand(), signatureVerifyCommand())
	return sig
}

const signaturePath = "/coffer/v1/registry/signatures"

func anchorTable(list []wire.SignatureAnchor) Table {
	t := Table{Header: []string{"NAME", "KIND", "STORE TYPE", "FINGERPRINTS (SHA-256)", "CREATED", "KEY URL"}}
	for _, a := range list {
		prints := make([]string, len(a.Fingerprints))
		for i, p := range a.Fingerprints {
			prints[i] = p[:min(16, len(p))] + "…"
		}
		src := a.KeyURL
		if a.KeyStatus != "" {
			src += " (trusts nothing: " + a.KeyStatus + ")"
		}
		t.Rows = append(t.Rows, []string{a.Name, a.Kind, a.StoreType, strings.Join(prints, " "), a.Created.Local().Format(time.DateTime), src})
	}
	return t
}

// readInput reads a --file argument ("-" is standard input).
func readInput(cmd *cobra.Command, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

func signatureAnchorCommand() *cobra.Command {
	anchor := &cobra.Command{Use: "anchor", Short: "Add, list and delete trust anchors (notation trust stores, cosign public keys)"}
	var kind, storeType, file, keyURL string
	add := &cobra.Command{
		Use:   "add NAME --kind notation|cosign --file PEM | --cosign-key-url URL",
		Short: "Add a trust anchor",
		Long: `Add a notation trust store (--kind notation: the PEM X.509 certificates of a CA, a
signing authority or a timestamping authority, --store-type ca|signingAuthority|tsa, named
STORETYPE:NAME in a notation trust policy) or a cosign public key (--kind cosign: cosign.pub,
PEM), or a cosign key held in one of this server's vaults (--cosign-key-url
https://VAULT-HOST/keys/NAME[/VERSION]): the registry reads its public key in-process as its
system identity ([system], which needs the get and list key permissions on the vault). A
versionless URL trusts every enabled version (the newest 16) and follows rotation: the key
is re-read every minute and by 'anchor refresh NAME'; a disabled or deleted key then
trusts nothing. Anchors cannot be changed otherwise: delete and add again (the policy
version changes, and every cached verification is recomputed).`,
		Example: `  coffer registry signature anchor add team-ca --kind notation --file ca.pem
  coffer registry signature anchor add release-tsa --kind notation --store-type tsa --file tsa.pem
  coffer registry signature anchor add ci --kind cosign --file cosign.pub
  cat cosign.pub | coffer registry signature anchor add ci --kind cosign --file - -o json
  coffer registry signature anchor add release --cosign-key-url https://signing.vault.localhost:5000/keys/release`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := wire.SignatureAnchor{Name: args[0], Kind: kind, StoreType: storeType}
			var material []byte
			switch {
			case keyURL != "" && (file != "" || (kind != "" && kind != wire.AnchorCosign)):
				return fmt.Errorf("--cosign-key-url names a cosign key in a vault: give no --file, and --kind cosign or none")
			case keyURL != "":
				in.Kind, in.KeyURL = wire.AnchorCosign, keyURL
			case kind == "" || file == "":
				return fmt.Errorf("give --kind notation|cosign and --file PEM, or --cosign-key-url URL")
			default:
				var err error
				if material, err = readInput(cmd, file); err != nil {
					return err
				}
			}
			switch {
			case in.KeyURL != "": // the server reads the key from the vault
			case kind == wire.AnchorCosign:
				in.PublicKey = string(material)
			default:
				in.Certificates = string(material)
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.SignatureAnchor
			if err := c.do(cmd.Context(), "POST", signaturePath+"/anchors", in, &out); err != nil {
				return err
			}
			return printResult(cmd, out, func() Table { return anchorTable([]wire.SignatureAnchor{out}) })
		},
	}
	add.Flags().StringVar(&kind, "kind", "", "notation or cosign")
	add.Flags().StringVar(&storeType, "store-type", "", "notation trust store type: ca (default), signingAuthority or tsa")
	add.Flags().StringVarP(&file, "file", "f", "", "PEM file (- for standard input)")
	add.Flags().StringVar(&keyURL, "cosign-key-url", "", "a cosign key in this server's vault: https://VAULT-HOST/keys/NAME[/VERSION]")
	refresh := &cobra.Command{
		Use:   "refresh NAME",
		Short: "Re-read a vault-held cosign key now (after a rotation, or a version disabled)",
		Long: `Re-read the public keys of a cosign anchor added with --cosign-key-url. The registry
does this every minute by itself; this makes it happen now. When the versions it trusts
change, every cached verification is recomputed.`,
		Example: `  coffer registry signature anchor refresh release
  coffer registry signature anchor refresh release -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.SignatureAnchorRefresh
			if err := c.do(cmd.Context(), "POST", signaturePath+"/anchors/"+url.PathEscape(args[0])+"/refresh", nil, &out); err != nil {
				return err
			}
			return printResult(cmd, out, func() Table {
				return Table{Header: []string{"NAME", "CHANGED", "VERSIONS", "STATUS"},
					Rows: [][]string{{out.Name, fmt.Sprint(out.Changed), strings.Join(out.Versions, ","), out.Status}}}
			})
		},
	}

	list := &cobra.Command{
		Use:     "list",
		Short:   "List the trust anchors",
		Example: "  coffer registry signature anchor list\n  coffer registry signature anchor list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.List[wire.SignatureAnchor]
			if err := c.do(cmd.Context(), "GET", signaturePath+"/anchors", nil, &out); err != nil {
				return err
			}
			out.Value = orEmpty(out.Value)
			return printResult(cmd, out.Value, func() Table { return anchorTable(out.Value) })
		},
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a trust anchor: images signed only under it stop verifying at once",
		Example: `  coffer registry signature anchor delete team-ca
  coffer registry signature anchor delete ci -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), "DELETE", signaturePath+"/anchors/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			return printResult(cmd, map[string]string{"deleted": args[0]}, func() Table {
				return Table{Header: []string{"DELETED"}, Rows: [][]string{{args[0]}}}
			})
		},
	}
	anchor.AddCommand(add, list, del, refresh)
	return anchor
}

func signaturePolicyTable(p wire.SignaturePolicy) Table {
	t := Table{Header: []string{"SCOPE", "MODE", "KINDS", "COSIGN KEYS", "EXEMPT", "PUBLISHERS", "PLATFORMS"}}
	for _, r := range p.Repositories {
		kinds := strings.Join(r.Kinds, ",")
		if kinds == "" {
			kinds = "any"
		}
		keys := strings.Join(r.CosignKeys, ",")
		if keys == "" {
			keys = "any"
		}
		plat := r.Platforms
		if plat == "" {
			plat = "index"
		}
		pub := r.Publishers
		switch {
		case r.RefusePublishers:
			pub = "refuse"
		case pub == "":
			pub = "head"
		}
		t.Rows = append(t.Rows, []string{r.Scope, r.Mode, kinds, keys, fmt.Sprint(len(r.Exempt)), pub, plat})
	}
	return t
}

func signaturePolicyCommand() *cobra.Command {
	policy := &cobra.Command{Use: "policy", Short: "Show or replace the signature policy"}
	var file string
	set := &cobra.Command{
		Use:   "set --file POLICY.json",
		Short: "Replace the signature policy",
		Long: `Replace the whole policy with a JSON document:

  {
    "repositories": [
      {"scope": "prod/*", "mode": "enforce"},
      {"scope": "staging/*", "mode": "audit", "kinds": ["cosign-bundle"], "cosignKeys": ["ci"]},
      {"scope": "*", "mode": "off"}
    ],
    "notation": { a notation trust policy document: "version": "1.0", "trustPolicies": [...] }
  }

A repository takes the rule of its exact scope, else of the longest NAME/* prefix, else of
"*"; with none it is off. Kinds are notation, cosign (the sha256-<hex>.sig tag), cosign-oci
(OCI 1.1 referrer) and cosign-bundle (Sigstore bundle v0.3); by default any counts. notation
registryScopes match HOST/REPO, HOST being the registryHost that 'policy show' prints, or "*".
The document is validated (notation's own validation for the trust policy) and every trust
store and cosign key it names must be an anchor.`,
		Example: `  coffer registry signature policy set --file policy.json
  echo '{"repositories":[{"scope":"prod/*","mode":"audit"}]}' | coffer registry signature policy set -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := readInput(cmd, file)
			if err != nil {
				return err
			}
			var doc json.RawMessage
			if err := json.Unmarshal(raw, &doc); err != nil {
				return fmt.Errorf("%s is not JSON: %w", file, err)
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.SignaturePolicy
			if err := c.do(cmd.Context(), "PUT", signaturePath+"/policy", doc, &out); err != nil {
				return err
			}
			return printResult(cmd, out, func() Table { return signaturePolicyTable(out) })
		},
	}
	set.Flags().StringVarP(&file, "file", "f", "", "policy document (- for standard input)")
	set.MarkFlagRequired("file")
	show := &cobra.Command{
		Use:     "show",
		Short:   "Show the signature policy (the whole document with -o json)",
		Example: "  coffer registry signature policy show\n  coffer registry signature policy show -o json > policy.json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.SignaturePolicy
			if err := c.do(cmd.Context(), "GET", signaturePath+"/policy", nil, &out); err != nil {
				return err
			}
			return printResult(cmd, out, func() Table { return signaturePolicyTable(out) })
		},
	}
	policy.AddCommand(set, show)
	return policy
}

func signatureVerifyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "verify REPOSITORY:TAG|REPOSITORY@DIGEST",
		Short: "Judge one image under the current signature policy, as a pull would",
		Example: `  coffer registry signature verify team/app:v1
  coffer registry signature verify team/app@sha256:0123... -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, ref, ok := strings.Cut(args[0], "@")
			if !ok {
				i := strings.LastIndex(args[0], ":")
				if i < 0 || strings.Contains(args[0][i:], "/") {
					return fmt.Errorf("give REPOSITORY:TAG or REPOSITORY@DIGEST, not %q", args[0])
				}
				repo, ref = args[0][:i], args[0][i+1:]
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.SignatureVerification
			q := url.Values{"repository": {repo}, "reference": {ref}}
			if err := c.do(cmd.Context(), "GET", signaturePath+"/verification?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			return printResult(cmd, out, func() Table {
				return Table{Header: []string{"DIGEST", "MODE", "SCOPE", "SIGNATURES", "VERIFIED", "KIND", "ANCHOR", "REASON"},
					Rows: [][]string{{out.Digest, out.Mode, out.Scope, strings.Join(out.Signatures, ","), fmt.Sprint(out.Verified), out.Kind, out.Anchor, out.Reason}}}
			})
		},
	}
}

// signedColumn is the tag list's SIGNATURES cell: the kinds of signature found.
func signedColumn(t wire.Tag) string {
	if len(t.Signatures) == 0 {
		return "-"
	}
	return strings.Join(t.Signatures, ",")
}

// verifiedColumn is the tag list's VERIFIED cell: yes (ANCHOR), no (reason) or - when no
// policy applies and nothing is signed.
func verifiedColumn(t wire.Tag) string {
	switch {
	case t.Verified == nil:
		return "-"
	case *t.Verified:
		return "yes (" + t.Anchor + ")"
	}
	return "no (" + t.SignaturePolicy + ": " + t.SignatureReason + ")"
}

// tagTable is the tag listing with each tag's signature state (tag list, repo show).
func tagTable(tags []wire.Tag) Table {
	t := Table{Header: []string{"TAG", "DIGEST", "UPDATED", "ENCRYPTED LAYERS", "SIGNATURES", "VERIFIED"}}
	for _, tg := range tags {
		enc := "-"
		if tg.EncryptedLayers > 0 {
			enc = strconv.Itoa(tg.EncryptedLayers)
		}
		t.Rows = append(t.Rows, []string{tg.Name, tg.Digest, tg.Updated.Local().Format(time.DateTime), enc, signedColumn(tg), verifiedColumn(tg)})
	}
	return t
}

// repoShow is what 'registry repo show' prints: the repository, its tags from the tag
// listing (the same data as 'tag list') and a count of their signature state.
type repoShow struct {
	wire.Repository
	Signatures repoSignatures `json:"signatures"`
	Tags       []wire.Tag     `json:"tags"`
}

// repoSignatures counts the tags by signature state.
type repoSignatures struct {
	Tags int `json:"tags"`
	// Signed: a signature of some kind is stored; Verified: one verifies under the
	// current policy; Unverified: a policy (audit or enforce) applies and none verifies.
	Signed     int `json:"signed"`
	Verified   int `json:"verified"`
	Unverified int `json:"unverified"`
}

func summarizeSignatures(tags []wire.Tag) repoSignatures {
	s := repoSignatures{Tags: len(tags)}
	for _, t := range tags {
		if len(t.Signatures) > 0 {
			s.Signed++
		}
		switch {
		case t.Verified != nil && *t.Verified:
			s.Verified++
		case t.Verified != nil && t.SignaturePolicy != "" && t.SignaturePolicy != wire.SignatureModeOff:
			s.Unverified++
		}
	}
	return s
}

func repoShowRun(cmd *cobra.Command, args []string) error {
	c, err := newAPIClient(cmd)
	if err != nil {
		return err
	}
	var out repoShow
	if err := c.do(cmd.Context(), "GET", repoPath(args), nil, &out.Repository); err != nil {
		return err
	}
	var tl wire.TagList
	if err := c.do(cmd.Context(), "GET", "/coffer/v1/registry/tags?"+url.Values{"repository": {args[0]}}.Encode(), nil, &tl); err != nil {
		return fmt.Errorf("repository %s: list its tags: %w", args[0], err)
	}
	out.Tags = orEmpty(tl.Tags)
	out.Signatures = summarizeSignatures(out.Tags)
	return printResult(cmd, out, func() Table {
		w := cmd.OutOrStdout()
		rt := repoRows([]wire.Repository{out.Repository})
		enc := "no"
		if r := out.Repository; r.ClientEncrypted != nil && *r.ClientEncrypted {
			enc = fmt.Sprintf("yes (%d tags)", r.EncryptedTags)
		}
		rt.Header = append(rt.Header, "CLIENT-ENCRYPTED")
		rt.Rows[0] = append(rt.Rows[0], enc)
		writeTable(w, rt)
		s := out.Signatures
		fmt.Fprintf(w, "\nSignatures: %d of %d tags signed, %d verified, %d unverified under a policy\n\n", s.Signed, s.Tags, s.Verified, s.Unverified)
		return tagTable(out.Tags)
	})
}
