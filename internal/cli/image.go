package cli

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"oras.land/oras-go/v2/registry/remote/auth"
	dockercreds "oras.land/oras-go/v2/registry/remote/credentials"

	"github.com/cofferhq/coffer/internal/imagecrypt"
)

func imageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Encrypt, decrypt and inspect container images (ocicrypt format, client side)",
		Long: `Client-side image encryption in ocicrypt's format, readable by skopeo, buildah, podman,
containerd imgcrypt and CRI-O (docs/image-encryption.md).

Images are oci:DIR[:TAG], docker://HOST/REPO:TAG or docker-archive:FILE (source only).
Registry credentials come from --creds, $COFFER_USERNAME/$COFFER_PASSWORD, the registry
refresh token 'coffer login' saved (for that server's host), or the docker credential store
(~/.docker/config.json).

vault: recipients and keys reach the vault, in this order: as the service principal of
AZURE_CLIENT_ID/AZURE_CLIENT_SECRET (with AZURE_TENANT_ID, AZURE_AUTHORITY_HOST) when both
are set, for any vault; else, for a vault of the Coffer server you logged in to (or that
COFFER_USERNAME/COFFER_PASSWORD or COFFER_CLIENT_ID/COFFER_CLIENT_SECRET reach), through its
management API as that identity (audited as you); else as the host's managed identity.`,
	}
	flags := func(c *cobra.Command) {
		c.Flags().String("creds", "", "registry credentials USER:PASSWORD (default: $COFFER_USERNAME/$COFFER_PASSWORD, else 'coffer login', else the docker credential store)")
		c.Flags().Bool("plain-http", false, "talk plain HTTP to the registry (local test registries only)")
		c.Flags().IntSlice("layer", nil, "process only these layers (0 is the bottom; negative counts from the top: -1 is the last)")
		c.Flags().StringSlice("platform", nil, "process only these platforms of an index (os/arch[/variant])")
		c.Flags().Int("parallel", 0, "layers processed at once (default: the number of CPUs)")
	}
	encrypt := &cobra.Command{
		Use:   "encrypt SRC DST --recipient R...",
		Short: "Encrypt an image's layers to recipients",
		Long: `Encrypt the layers of SRC (the config stays readable) and write the image to DST. A Docker
schema 2 image is converted to OCI. Recipients: jwe:PUBLIC.pem (PKIX PEM, DER or JWK),
pkcs7:CERT.pem, vault:KEY-URL (the public half of an RSA key in a key vault; decryptable by
any ocicrypt client with the private key, or by Coffer through the vault) and
provider:NAME:PARAMS (an ocicrypt key provider, e.g. provider:coffer:KEY-URL).`,
		Example: `  coffer image encrypt oci:./app:v1 docker://localhost:5000/team/app:v1-enc --recipient jwe:pub.pem
  coffer image encrypt docker://localhost:5000/team/app:v1 docker://localhost:5000/team/app:enc \
      --recipient vault:https://localhost:8443/keys/images --layer -1
  coffer image encrypt docker-archive:app.tar oci:./enc --recipient pkcs7:cert.pem -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			rs, _ := cmd.Flags().GetStringSlice("recipient")
			o, err := imageOptions(cmd)
			if err != nil {
				return err
			}
			res, err := imagecrypt.Encrypt(cmd.Context(), args[0], args[1], rs, o)
			if err != nil {
				return err
			}
			return printResult(cmd, res, imageTable(res))
		},
	}
	flags(encrypt)
	encrypt.Flags().StringSlice("recipient", nil, "jwe:PUBLIC.pem, pkcs7:CERT.pem, vault:KEY-URL or provider:NAME:PARAMS (repeatable)")
	decrypt := &cobra.Command{
		Use:   "decrypt SRC DST --key K...",
		Short: "Decrypt an image's layers, verified before anything is written",
		Long: `Decrypt the encrypted layers of SRC and write the image to DST. Every layer is read whole
and checked (ocicrypt's HMAC, its recorded digest and the config's diff_id) before anything
is written: a tampered image writes nothing. Keys: PRIVATE.pem[:PASSWORD] (PEM, DER or JWK;
the password also as :file=PATH), CERT.pem beside a pkcs7 private key, vault:KEY-URL (the
vault unwraps: the private key never leaves it) and provider:NAME.`,
		Example: `  coffer image decrypt docker://localhost:5000/team/app:v1-enc oci:./app:v1 --key priv.pem
  coffer image decrypt docker://localhost:5000/team/app:v1-enc docker://localhost:5000/team/app:v1 \
      --key vault:https://localhost:8443/keys/images -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ks, _ := cmd.Flags().GetStringSlice("key")
			o, err := imageOptions(cmd)
			if err != nil {
				return err
			}
			res, err := imagecrypt.Decrypt(cmd.Context(), args[0], args[1], ks, o)
			if err != nil {
				return err
			}
			return printResult(cmd, res, imageTable(res))
		},
	}
	flags(decrypt)
	decrypt.Flags().StringSlice("key", nil, "PRIVATE.pem[:PASSWORD], CERT.pem, vault:KEY-URL or provider:NAME (repeatable)")
	inspect := &cobra.Command{
		Use:   "inspect REF",
		Short: "Show, per layer, whether it is encrypted and to whom",
		Long: `Show, per layer, whether it is encrypted, with which schemes and to which recipients
(key ids where the format tells). For a docker:// reference it also says whether the
registry holds signatures (notation or cosign, as referrers or cosign's .sig tag) of the
manifest: encryption proves nothing about who built the image, only a signature does.`,
		Example: `  coffer image inspect docker://localhost:5000/team/app:v1-enc
  coffer image inspect oci:./app:v1 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := imageOptions(cmd)
			if err != nil {
				return err
			}
			res, err := imagecrypt.Inspect(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			if err := printResult(cmd, res, imageTable(res)); err != nil {
				return err
			}
			if format, _ := cmd.Flags().GetString("output"); res.Signatures != nil && format != "json" {
				printSignatureNote(cmd, res.Signatures)
			}
			return nil
		},
	}
	flags(inspect)
	cmd.AddCommand(encrypt, decrypt, inspect)
	return cmd
}

// imageOptions builds the image options from the flags and the environment.
func imageOptions(cmd *cobra.Command) (imagecrypt.Options, error) {
	var o imagecrypt.Options
	saved, err := loadCredentials()
	if err != nil {
		return o, err
	}
	caFile, _ := cmd.Flags().GetString("ca-file")
	if caFile == "" {
		caFile = os.Getenv("COFFER_CA_FILE")
	}
	if caFile == "" {
		caFile = saved.CAFile
	}
	hc, err := httpClientFor(caFile)
	if err != nil {
		return o, err
	}
	o.Registry.HTTPClient = hc
	o.Registry.PlainHTTP, _ = cmd.Flags().GetBool("plain-http")
	creds, _ := cmd.Flags().GetString("creds")
	user, pass := os.Getenv("COFFER_USERNAME"), os.Getenv("COFFER_PASSWORD")
	if creds != "" {
		var ok bool
		if user, pass, ok = strings.Cut(creds, ":"); !ok {
			return o, fmt.Errorf("--creds must be USER:PASSWORD")
		}
	}
	if user != "" {
		c := auth.Credential{Username: user, Password: pass}
		o.Registry.Credential = func(_ context.Context, _ string) (auth.Credential, error) { return c, nil }
	} else if cred, err := savedRegistryCredential(saved); err != nil {
		return o, err
	} else if cred != nil {
		o.Registry.Credential = cred
	}
	o.KEKs = newImageKEKs(cmd, saved, caFile)
	o.Layers, _ = cmd.Flags().GetIntSlice("layer")
	o.Platforms, _ = cmd.Flags().GetStringSlice("platform")
	o.Parallel, _ = cmd.Flags().GetInt("parallel")
	if f, ok := cmd.ErrOrStderr().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		o.Progress = f
	}
	return o, nil
}

func imageTable(res *imagecrypt.Result) func() Table {
	return func() Table {
		t := Table{Header: []string{"PLATFORM", "LAYER", "MEDIA TYPE", "DIGEST", "SIZE", "ENCRYPTED", "RECIPIENTS"}}
		for _, img := range res.Images {
			for _, l := range img.Layers {
				t.Rows = append(t.Rows, []string{img.Platform, strconv.Itoa(l.Index), l.MediaType, l.Digest.String(), strconv.FormatInt(l.Size, 10),
					strconv.FormatBool(l.Encrypted), strings.Join(l.Recipients, "; ")})
			}
		}
		return t
	}
}

// savedRegistryCredential is the credential of `coffer login`'s registry refresh token for
// its server's host, and the docker credential store for every other host; nil when
// `coffer login` saved no registry token.
func savedRegistryCredential(saved credentials) (auth.CredentialFunc, error) {
	if saved.RegistryRefreshToken == "" || saved.Server == "" {
		return nil, nil
	}
	u, err := url.Parse(saved.Server)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("the saved server %q is not a URL: run 'coffer login' again", saved.Server)
	}
	own := auth.Credential{RefreshToken: saved.RegistryRefreshToken}
	docker := sync.OnceValues(func() (auth.CredentialFunc, error) {
		store, err := dockercreds.NewStoreFromDocker(dockercreds.StoreOptions{})
		if err != nil {
			return nil, fmt.Errorf("docker credential store: %w", err)
		}
		return dockercreds.Credential(store), nil
	})
	return func(ctx context.Context, hostport string) (auth.Credential, error) {
		if strings.EqualFold(hostport, u.Host) {
			return own, nil
		}
		other, err := docker()
		if err != nil {
			return auth.EmptyCredential, err
		}
		return other(ctx, hostport)
	}, nil
}

// printSignatureNote says, under inspect's table, whether the registry holds signatures
// of the manifest and what encryption does not prove.
func printSignatureNote(cmd *cobra.Command, s *imagecrypt.Signatures) {
	out := cmd.OutOrStdout()
	switch {
	case s.Error != "":
		fmt.Fprintf(out, "\nSignatures: unknown (%s)\n", s.Error)
	case s.Count == 0:
		fmt.Fprintln(out, "\nSignatures: none")
	default:
		fmt.Fprintf(out, "\nSignatures: %d (%s); verify them with 'coffer registry signature verify' or notation/cosign\n", s.Count, strings.Join(s.Kinds, ", "))
	}
	fmt.Fprintf(out, "Note: %s.\n", s.Note)
}
