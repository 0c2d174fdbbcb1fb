package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/kek/resolve"
	"github.com/cofferhq/coffer/internal/kmsplugin"
)

// kmsPluginCommand is `coffer kms-plugin`: the Kubernetes KMS v2 plugin, run beside the
// apiserver on a control-plane node.
func kmsPluginCommand() *cobra.Command {
	var (
		listen, cluster, tenant, clientID, secretFile, authority, healthListen, logLevel string
		keyID                                                                            string
		decryptKeys                                                                      []string
		poll, selfTest                                                                   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "kms-plugin",
		Short: "Run the Kubernetes KMS v2 plugin on a unix socket",
		Long: `Serves the Kubernetes KMS v2 API (Status, Encrypt, Decrypt) on a unix socket for the
kube-apiserver's EncryptionConfiguration, with a key from a vault (docs/kms.md).

With --cluster, the plugin fetches its cluster's settings from the Coffer server (--server)
as its own identity: a service principal (AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, or
--client-id and --client-secret-file), or, with no client secret and IDENTITY_ENDPOINT and
IDENTITY_HEADER set (the managed-identity endpoint, as the Azure SDK reads it), a managed
identity: user-assigned with its client id in AZURE_CLIENT_ID (or --client-id),
system-assigned without one. The same identity reaches the vault. It gets: the write key (platform- or customer-managed), the
decrypt-only keys, and whether it reaches the vault directly or through Coffer. A migration
between keys is made on the server and needs no change here. With --key-id instead, it uses
that key of any vault that speaks the Key Vault keys API.

Status answers healthz "ok" only while the last self-test (a wrap and unwrap, every
--self-test-interval) passed, and the exact key version as key_id. The write key's newest
version is read every --key-rotation-poll (jittered by up to a tenth); SIGHUP or
'coffer kms rotate-now' reads it at once. /healthz and /metrics are served on
--health-listen (loopback only). SIGTERM stops gracefully.`,
		Example: `  # On a control-plane node, as a systemd unit or static pod:
  AZURE_CLIENT_ID=... AZURE_CLIENT_SECRET=... coffer kms-plugin \
    --listen unix:///var/run/coffer-kms/kms.sock --server https://coffer.example:5000 \
    --ca-file /etc/coffer/ca.pem --cluster prod-eu

  # As a user-assigned managed identity of the Coffer host (the server's /msi/token):
  IDENTITY_ENDPOINT=https://127.0.0.1:5000/msi/token IDENTITY_HEADER=$(cat /var/lib/coffer/keys/identity-header) \
    AZURE_CLIENT_ID=MI-CLIENT-ID coffer kms-plugin --listen unix:///var/run/coffer-kms/kms.sock \
    --server https://127.0.0.1:5000 --ca-file /etc/coffer/ca.pem --cluster prod-eu

  # A fixed key in any Key Vault-compatible vault:
  coffer kms-plugin --listen unix:///run/kms.sock --key-id https://team.vault.example/keys/k8s \
    --tenant-id T --client-id C --client-secret-file /etc/coffer/secret`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := kmsplugin.SocketPath(listen)
			if err != nil {
				return err
			}
			log, err := pluginLogger(cmd, logLevel)
			if err != nil {
				return err
			}
			if clientID == "" {
				clientID = os.Getenv("AZURE_CLIENT_ID")
			}
			if tenant == "" {
				tenant = os.Getenv("AZURE_TENANT_ID")
			}
			secret := os.Getenv("AZURE_CLIENT_SECRET")
			if secretFile != "" {
				raw, err := os.ReadFile(secretFile)
				if err != nil {
					return fmt.Errorf("read --client-secret-file: %w", err)
				}
				secret = strings.TrimSpace(string(raw))
			}
			server, _ := cmd.Flags().GetString("server")
			if server == "" {
				server = os.Getenv("COFFER_SERVER")
			}
			caFile, _ := cmd.Flags().GetString("ca-file")
			if caFile == "" {
				caFile = os.Getenv("COFFER_CA_FILE")
			}
			if authority == "" {
				authority = os.Getenv("AZURE_AUTHORITY_HOST")
			}
			if authority == "" && server != "" {
				authority = strings.TrimRight(server, "/") + "/"
			}
			// No client secret and a managed-identity endpoint in the environment: the plugin
			// is a managed identity, user-assigned (its client id in AZURE_CLIENT_ID or
			// --client-id) or system-assigned (no client id), for the Coffer server and the
			// vault alike, as the Azure SDK's DefaultAzureCredential would choose.
			managed := secret == "" && managedIdentityEnv()
			remote := resolve.NewRemote(resolve.Credential{TenantID: tenant, ClientID: clientID, ClientSecret: secret, AuthorityHost: authority}, caFile)
			router := pluginRouter{Remote: remote, Identity: clientID}
			var source kmsplugin.Source
			switch {
			case cluster != "" && keyID != "":
				return errors.New("give --cluster (settings from the Coffer server) or --key-id (a fixed key), not both")
			case cluster != "":
				if server == "" {
					return errors.New("--cluster needs --server (or $COFFER_SERVER): the Coffer server that holds the cluster's settings")
				}
				if !managed && (clientID == "" || secret == "") {
					return errors.New("the plugin's identity is missing: set AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or --client-id and --client-secret-file) for a service principal, or IDENTITY_ENDPOINT and IDENTITY_HEADER (with AZURE_CLIENT_ID for a user-assigned identity) for a managed identity")
				}
				hc, err := httpClientFor(caFile)
				if err != nil {
					return err
				}
				hc.Timeout = 30 * time.Second
				c := &pluginServer{Server: server, Cluster: cluster, ClientID: clientID, ClientSecret: secret, HTTP: hc}
				if managed {
					if c.Cred, err = managedCredential(clientID, hc); err != nil {
						return err
					}
				}
				source, router.Coffer = c, c
			case keyID != "":
				source = kmsplugin.StaticSource{S: kmsplugin.Settings{WriteKey: keyID, DecryptKeys: decryptKeys}}
			default:
				return errors.New("give --cluster NAME (with --server) or --key-id URL")
			}
			p, err := kmsplugin.New(kmsplugin.Options{Source: source, KEKs: router, PollInterval: poll, SelfTestInterval: selfTest, Log: log})
			if err != nil {
				return err
			}
			if managed {
				log.Info("kms plugin: acting as a managed identity", "clientId", managedName(clientID))
			}
			return runPlugin(cmd.Context(), p, path, healthListen, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "unix:///var/run/coffer-kms/kms.sock", "unix socket to serve on (unix:///path); a stale socket file is removed, the socket is 0600")
	f.StringVar(&cluster, "cluster", "", "the cluster whose settings the Coffer server holds (coffer kms cluster create)")
	f.StringVar(&keyID, "key-id", "", "a fixed write key instead of --cluster: https://VAULT-HOST/keys/NAME")
	f.StringSliceVar(&decryptKeys, "decrypt-key-id", nil, "with --key-id: earlier keys that still unwrap (repeatable)")
	f.StringVar(&tenant, "tenant-id", "", "tenant of the plugin's identity (default $AZURE_TENANT_ID)")
	f.StringVar(&clientID, "client-id", "", "client id of the plugin's service principal (default $AZURE_CLIENT_ID)")
	f.StringVar(&secretFile, "client-secret-file", "", "file (0600) holding the client secret (default $AZURE_CLIENT_SECRET)")
	f.StringVar(&authority, "authority-host", "", "token service for direct vault access (default $AZURE_AUTHORITY_HOST, else the Coffer server)")
	f.DurationVar(&poll, "key-rotation-poll", 6*time.Hour, "how often the write key's newest version is read (jittered by up to a tenth)")
	f.DurationVar(&selfTest, "self-test-interval", 30*time.Second, "how often the key is checked with a wrap and unwrap (Status is answered from the last check)")
	f.StringVar(&healthListen, "health-listen", "127.0.0.1:8787", "loopback address for /healthz, /metrics and POST /poll (empty: off)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (debug logs every call with the apiserver's uid)")
	return cmd
}

// managedIdentityEnv tells whether the environment names a managed-identity endpoint the
// Azure SDK's ManagedIdentityCredential uses (App Service's, as Coffer's /msi/token serves
// it, or the older MSI_ENDPOINT).
func managedIdentityEnv() bool {
	return (os.Getenv("IDENTITY_ENDPOINT") != "" && os.Getenv("IDENTITY_HEADER") != "") || os.Getenv("MSI_ENDPOINT") != ""
}

// managedCredential is the Azure SDK's managed-identity credential for clientID (empty: the
// system-assigned identity), over hc (which trusts --ca-file).
func managedCredential(clientID string, hc *http.Client) (azcore.TokenCredential, error) {
	o := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: policy.ClientOptions{Transport: hc}}
	if clientID != "" {
		o.ID = azidentity.ClientID(clientID)
	}
	cred, err := azidentity.NewManagedIdentityCredential(o)
	if err != nil {
		return nil, fmt.Errorf("managed identity %s: %w", managedName(clientID), err)
	}
	return cred, nil
}

func pluginLogger(cmd *cobra.Command, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: l})), nil
}

// runPlugin serves until ctx ends (SIGTERM, SIGINT); SIGHUP triggers a poll.
func runPlugin(ctx context.Context, p *kmsplugin.Plugin, path, healthListen string, log *slog.Logger) error {
	if err := p.Start(ctx); err != nil {
		log.Error("kms plugin: first key check failed; Status answers an error until it passes", "err", err)
	}
	l, err := kmsplugin.ListenUnix(path)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	var ops net.Listener
	if healthListen != "" {
		if ops, err = kmsplugin.ListenOps(healthListen); err != nil {
			l.Close()
			return err
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("kms plugin: SIGHUP: reading the key settings now")
				p.Trigger()
			}
		}
	}()
	opsAddr := ""
	if ops != nil {
		opsAddr = ops.Addr().String()
	}
	log.Info("kms plugin serving", "socket", path, "health", opsAddr)
	fmt.Fprintf(os.Stdout, "Coffer KMS plugin is serving on unix://%s (health on %s)\n", path, opsAddr)
	return p.Serve(ctx, l, ops)
}
