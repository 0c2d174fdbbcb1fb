// Package config holds the server's configuration and the rule that fills it.
//
// Every setting is a flag of `coffer serve`. The same setting can come from the environment
// as COFFER_<FLAG NAME> (upper case, dashes as underscores) or from the YAML file named by
// --config (top-level key = flag name). Precedence: flag, then environment, then file, then
// the default. Because the rule is generic over the flag set, a part that adds a flag to
// `serve` gets the environment variable and the YAML key for free.
//
// A few settings are not flags: the Azure SDK's conventional credential variables
// (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_AUTHORITY_HOST), which Coffer
// presents to a key vault of another server. They come from the environment only (a client
// secret does not belong on a command line), and Load reads them into Server.Azure, so no
// other package reads the environment for them.
package config

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// Server is the configuration of `coffer serve`.
type Server struct {
	ConfigFile string

	DataDir   string
	Listen    string
	Hostnames []string
	TLSCert   string
	TLSKey    string
	PlainHTTP bool
	// HTTP1Only offers TLS clients HTTP/1.1 alone (ALPN), not HTTP/2 (docs/registry.md,
	// "HTTP/2": Go's HTTP/2 client pulls large blobs slower than its HTTP/1.1 client).
	HTTP1Only bool
	LogFormat string
	LogLevel  string

	// ShutdownTimeout bounds how long in-flight requests may run after SIGTERM.
	ShutdownTimeout time.Duration

	// TokenTTL is the lifetime of access tokens issued by the token service.
	TokenTTL time.Duration
	// TokenKeyRotation is the age after which the token signing key is replaced by a new
	// one (old public keys stay published until their tokens have expired).
	TokenKeyRotation time.Duration
	// LoginFailureLimit is how many failed logins per name or address within a minute are
	// answered before further attempts are slowed down with 429.
	LoginFailureLimit int

	// Limits bound what a slow or unauthenticated client can hold on the listeners.
	Limits Limits

	Vault      Vault
	Registry   Registry
	Encryption Encryption
	// BlobStore is where the registry's bytes live.
	BlobStore BlobStore
	// Metadata is the metadata database: "" (SQLite at <data-dir>/metadata.db) or a
	// postgres:// URL (see store.OpenPostgres).
	Metadata string
	// Azure is the credential for vaults of other servers (or Azure Key Vault), read from
	// the environment by Load.
	Azure Azure
	// KMSPlugin runs the Kubernetes KMS v2 plugin inside the server (docs/kms.md).
	KMSPlugin KMSPlugin
}

// Azure is a client-secret credential in the Azure SDK's conventions. It is used to reach a
// key in a vault of another server when ClientID names the identity (or the identity is
// [system]) and ClientSecret is set; otherwise the managed-identity endpoint is used, which
// the Azure SDK configures itself from IDENTITY_ENDPOINT and IDENTITY_HEADER (see
// docs/configuration.md).
type Azure struct {
	TenantID     string // AZURE_TENANT_ID
	ClientID     string // AZURE_CLIENT_ID
	ClientSecret string // AZURE_CLIENT_SECRET
	// AuthorityHost is the token service (another Coffer server's URL, or a sovereign
	// cloud's authority); empty means Microsoft Entra ID's public cloud.
	AuthorityHost string // AZURE_AUTHORITY_HOST
}

// Environment variables of Azure, in the Azure SDK's names.
const (
	EnvAzureTenantID      = "AZURE_TENANT_ID"
	EnvAzureClientID      = "AZURE_CLIENT_ID"
	EnvAzureClientSecret  = "AZURE_CLIENT_SECRET"
	EnvAzureAuthorityHost = "AZURE_AUTHORITY_HOST"
)

// AzureEnv lists the environment variables Load reads into Azure.
func AzureEnv() []string {
	return []string{EnvAzureTenantID, EnvAzureClientID, EnvAzureClientSecret, EnvAzureAuthorityHost}
}

// SDKEnv lists the environment variables that the Azure SDK's managed-identity credential
// reads from the process environment itself, with no option to pass them in: Coffer cannot
// route them through Server, so they are documented as read by the SDK.
func SDKEnv() []string {
	return []string{"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET"}
}

// AzureFromEnv reads the Azure credential from the environment.
func AzureFromEnv(getenv func(string) string) Azure {
	return Azure{
		TenantID:      getenv(EnvAzureTenantID),
		ClientID:      getenv(EnvAzureClientID),
		ClientSecret:  getenv(EnvAzureClientSecret),
		AuthorityHost: getenv(EnvAzureAuthorityHost),
	}
}

// Limits are the listeners' defences against slow and unauthenticated clients.
type Limits struct {
	// RequestBodyTimeout is the longest wait for the next bytes of a request body; every
	// read that returns data extends it. An answer given before the body was read (a 401)
	// waits at most min(RequestBodyTimeout, 2s) for the rest of the body, then closes.
	RequestBodyTimeout time.Duration
	// RequestBodyMinRate (bytes per second) is the average rate a request body must keep
	// once RequestBodyTimeout has passed since its first read (0: no minimum).
	RequestBodyMinRate int64
	// UnauthenticatedConnsPerAddress caps the open connections of one client address that
	// have not yet completed a request with a valid credential; more are closed when
	// accepted (0: no cap).
	UnauthenticatedConnsPerAddress int
}

// Vault settings.
type Vault struct {
	// RootKeyFile holds the vault root key that encrypts every private key at rest.
	// Default: <data-dir>/keys/vault-root.key. COFFER_VAULT_ROOT_KEY (base64) overrides the file.
	RootKeyFile string
	// Domain is the parent domain of vault host names: vault NAME is served at NAME.<domain>.
	Domain string
	// RateLimit is data-plane requests per second per vault before 429 (0: unlimited).
	RateLimit float64
	// HSMModule, HSMToken and HSMPinFile name a PKCS#11 module, a token (by label) and the
	// file holding its user PIN: vaults created with --hsm keep their -HSM keys there.
	HSMModule, HSMToken, HSMPinFile string
	// HSMAllVaults keeps the -HSM keys of every vault in the token.
	HSMAllVaults bool
	// RootKeyHSM seals the vault root key file with a key in the token (auto-unseal).
	RootKeyHSM bool
}

// Registry settings.
type Registry struct {
	AnonymousPull   bool
	UploadExpiry    time.Duration
	GCInterval      time.Duration
	MaxManifestSize int64
	// GCGrace is how long unreferenced content is kept before the collector may remove it;
	// zero is one hour. Not a flag: a client needs the grace between "the blob is there"
	// and its manifest push, so only tests shorten it.
	GCGrace time.Duration
}

// BlobStore settings: the registry's (sealed) bytes on the local disk or in S3-compatible
// object storage. With S3 and no access key here, the AWS SDK finds credentials in the
// standard AWS sources itself (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, the
// shared config and credentials files, web identity, container and instance metadata).
type BlobStore struct {
	// URL is "" (the filesystem under <data-dir>/blobs) or s3://BUCKET[/PREFIX].
	URL string
	// S3Endpoint is the S3 service's URL; "" means AWS S3.
	S3Endpoint string
	// S3Region is the bucket's region ("" takes the AWS sources, then us-east-1).
	S3Region string
	// S3PathStyle addresses the bucket as <endpoint>/<bucket> (most S3-compatible servers).
	S3PathStyle bool
	// S3AccessKeyID and the file holding its secret (mode 0600) are the credentials.
	S3AccessKeyID         string
	S3SecretAccessKeyFile string
}

// Encryption at rest settings.
type Encryption struct {
	KeyID                    string
	Identity                 string
	KeyRotationCheckInterval time.Duration
	KeyAccessCheckInterval   time.Duration
	// VaultCAFile is extra CA certificates (PEM) trusted when the key lives in a vault of
	// another server (Coffer with a private CA).
	VaultCAFile string
}

// KMSPlugin settings: the KMS v2 plugin served by `coffer serve` itself, one unix socket per
// cluster, each acting as its cluster's identity (docs/kms.md, "In-process mode").
type KMSPlugin struct {
	// Sockets are unix:///path entries, each optionally followed by =CLUSTER; an entry
	// without a cluster serves Cluster.
	Sockets []string
	// Cluster is the cluster of the sockets that name none.
	Cluster string
	// SelfTestInterval is how often each plugin wraps and unwraps under its write key.
	SelfTestInterval time.Duration
	// PollInterval is how often the settings and the write key's newest version are read.
	PollInterval time.Duration
	// HealthListen is a loopback address for /healthz, /metrics and POST /poll ("": off).
	HealthListen string
}

// KMSPluginSocket is one in-process plugin: a socket and the cluster it serves.
type KMSPluginSocket struct {
	Path, Cluster string
}

// Plugins parses and checks Sockets: each path absolute, each cluster named once, no
// socket twice. Whether the clusters exist is checked by the server at start.
func (k KMSPlugin) Plugins() ([]KMSPluginSocket, error) {
	if len(k.Sockets) == 0 {
		if k.Cluster != "" {
			return nil, fmt.Errorf("--kms-cluster %s needs --kms-plugin-socket unix:///path/to/kms.sock: the socket the apiserver's EncryptionConfiguration names", k.Cluster)
		}
		return nil, nil
	}
	var out []KMSPluginSocket
	paths, clusters := map[string]bool{}, map[string]bool{}
	for _, e := range k.Sockets {
		sock, cluster, named := strings.Cut(strings.TrimSpace(e), "=")
		if !named {
			cluster = k.Cluster
		}
		path := sock
		if !strings.HasPrefix(sock, "/") {
			rest, ok := strings.CutPrefix(sock, "unix://")
			if !ok {
				return nil, fmt.Errorf("--kms-plugin-socket %q: want unix:///path/to/kms.sock or unix:///path/to/kms.sock=CLUSTER", e)
			}
			path = rest
		}
		if !strings.HasPrefix(path, "/") || len(path) < 2 {
			return nil, fmt.Errorf("--kms-plugin-socket %q: the socket path must be absolute (unix:///path/to/kms.sock)", e)
		}
		if cluster == "" {
			return nil, fmt.Errorf("--kms-plugin-socket %q names no cluster: add =CLUSTER, or give --kms-cluster", e)
		}
		if paths[path] {
			return nil, fmt.Errorf("--kms-plugin-socket: %s is given twice", path)
		}
		if clusters[cluster] {
			return nil, fmt.Errorf("--kms-plugin-socket: cluster %s is served on two sockets (one plugin per cluster: its Status reports would compete)", cluster)
		}
		paths[path], clusters[cluster] = true, true
		out = append(out, KMSPluginSocket{Path: path, Cluster: cluster})
	}
	return out, nil
}

// Defaults returns the embedded default configuration.
func Defaults() Server {
	return Server{
		DataDir:           "coffer-data",
		Listen:            "127.0.0.1:5000",
		LogFormat:         "text",
		LogLevel:          "info",
		ShutdownTimeout:   30 * time.Second,
		TokenTTL:          10 * time.Minute,
		TokenKeyRotation:  30 * 24 * time.Hour,
		LoginFailureLimit: 10,
		Limits: Limits{
			RequestBodyTimeout:             30 * time.Second,
			RequestBodyMinRate:             1024,
			UnauthenticatedConnsPerAddress: 128,
		},
		Vault: Vault{Domain: "vault.localhost", RateLimit: 2000},
		Registry: Registry{
			UploadExpiry:    24 * time.Hour,
			GCInterval:      24 * time.Hour,
			MaxManifestSize: 4 << 20,
		},
		Encryption: Encryption{
			KeyRotationCheckInterval: time.Hour,
			KeyAccessCheckInterval:   60 * time.Second,
		},
		KMSPlugin: KMSPlugin{SelfTestInterval: 30 * time.Second, PollInterval: 6 * time.Hour},
	}
}

// BindFlags registers every setting of s as a flag on fs, with s's values as defaults.
func (s *Server) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.ConfigFile, "config", s.ConfigFile, "YAML configuration file (keys are flag names)")
	fs.StringVar(&s.DataDir, "data-dir", s.DataDir, "directory for all state: metadata, blobs, keys, TLS")
	fs.StringVar(&s.Listen, "listen", s.Listen, "address to listen on (host:port)")
	fs.StringSliceVar(&s.Hostnames, "hostname", s.Hostnames, "extra host names for the generated TLS certificate and public URLs")
	fs.StringVar(&s.TLSCert, "tls-cert", s.TLSCert, "operator's TLS certificate (PEM); default: one issued by the local CA")
	fs.StringVar(&s.TLSKey, "tls-key", s.TLSKey, "private key for --tls-cert (PEM)")
	fs.BoolVar(&s.PlainHTTP, "plain-http", s.PlainHTTP, "serve plain HTTP (refused unless --listen is a loopback address)")
	fs.BoolVar(&s.HTTP1Only, "http1-only", s.HTTP1Only, "offer TLS clients HTTP/1.1 only, not HTTP/2: faster bulk pulls for Go clients, one connection per concurrent request ([registry.md](registry.md#http2))")
	fs.StringVar(&s.LogFormat, "log-format", s.LogFormat, "log format: text or json")
	fs.StringVar(&s.LogLevel, "log-level", s.LogLevel, "log level: debug, info, warn, error")
	fs.DurationVar(&s.ShutdownTimeout, "shutdown-timeout", s.ShutdownTimeout, "how long in-flight requests may finish after SIGTERM")
	fs.DurationVar(&s.TokenTTL, "token-ttl", s.TokenTTL, "lifetime of issued access tokens")
	fs.DurationVar(&s.TokenKeyRotation, "token-key-rotation", s.TokenKeyRotation, "age after which the token signing key is rotated (old keys verify until their tokens expire)")
	fs.IntVar(&s.LoginFailureLimit, "login-failure-limit", s.LoginFailureLimit, "failed logins per name or address per minute before 429")

	fs.DurationVar(&s.Limits.RequestBodyTimeout, "request-body-timeout", s.Limits.RequestBodyTimeout, "longest wait for the next bytes of a request body (each read that returns data extends it; 0: none, not recommended)")
	fs.Int64Var(&s.Limits.RequestBodyMinRate, "request-body-min-rate", s.Limits.RequestBodyMinRate, "bytes per second a request body must average once --request-body-timeout has passed (0: no minimum)")
	fs.IntVar(&s.Limits.UnauthenticatedConnsPerAddress, "unauthenticated-connections-per-address", s.Limits.UnauthenticatedConnsPerAddress, "open connections per client address that have not yet made an authenticated request; more are closed (0: no cap)")

	fs.StringVar(&s.Vault.RootKeyFile, "vault-root-key-file", s.Vault.RootKeyFile, "file holding the vault root key (default <data-dir>/keys/vault-root.key)")
	fs.StringVar(&s.Vault.Domain, "vault-domain", s.Vault.Domain, "parent domain of vault host names (vault NAME answers at NAME.<domain>)")
	fs.StringVar(&s.Vault.HSMModule, "hsm-module", s.Vault.HSMModule, "PKCS#11 module of the HSM that holds -HSM keys (for SoftHSM: /usr/lib/softhsm/libsofthsm2.so; needs a CGO build)")
	fs.StringVar(&s.Vault.HSMToken, "hsm-token", s.Vault.HSMToken, "label of the HSM token")
	fs.StringVar(&s.Vault.HSMPinFile, "hsm-pin-file", s.Vault.HSMPinFile, "file holding the token's user PIN (mode 0600)")
	fs.BoolVar(&s.Vault.HSMAllVaults, "hsm-all-vaults", s.Vault.HSMAllVaults, "keep the RSA-HSM, EC-HSM and oct-HSM keys of every vault in the HSM, not only of vaults created with --hsm")
	fs.BoolVar(&s.Vault.RootKeyHSM, "vault-root-key-hsm", s.Vault.RootKeyHSM, "seal the vault root key file with a key in the HSM, unsealed at start (a plain file already there is sealed in place)")
	fs.Float64Var(&s.Vault.RateLimit, "vault-rate-limit", s.Vault.RateLimit, "data-plane requests per second per vault before 429 (0: no limit)")

	fs.BoolVar(&s.Registry.AnonymousPull, "anonymous-pull", s.Registry.AnonymousPull, "allow pulls without credentials")
	fs.DurationVar(&s.Registry.UploadExpiry, "upload-expiry", s.Registry.UploadExpiry, "how long an idle upload session lives")
	fs.DurationVar(&s.Registry.GCInterval, "gc-interval", s.Registry.GCInterval, "how often the online garbage collector runs (0: never)")
	fs.Int64Var(&s.Registry.MaxManifestSize, "max-manifest-size", s.Registry.MaxManifestSize, "largest manifest accepted, in bytes")

	fs.StringVar(&s.Metadata, "metadata", s.Metadata, "metadata database: empty for SQLite in <data-dir>, or postgres://USER@HOST[:PORT]/DB[?sslmode=verify-full&sslrootcert=FILE] (password: PGPASSWORD or ~/.pgpass rather than the URL)")
	fs.StringVar(&s.BlobStore.URL, "blob-store", s.BlobStore.URL, "where registry content is stored: empty for <data-dir>/blobs, or s3://BUCKET[/PREFIX] (sealed either way)")
	fs.StringVar(&s.BlobStore.S3Endpoint, "s3-endpoint", s.BlobStore.S3Endpoint, "S3 service URL for --blob-store s3://… (empty: AWS S3)")
	fs.StringVar(&s.BlobStore.S3Region, "s3-region", s.BlobStore.S3Region, "S3 bucket region (empty: the AWS configuration, then us-east-1)")
	fs.BoolVar(&s.BlobStore.S3PathStyle, "s3-path-style", s.BlobStore.S3PathStyle, "address the bucket as <endpoint>/<bucket> (most S3-compatible servers need it)")
	fs.StringVar(&s.BlobStore.S3AccessKeyID, "s3-access-key-id", s.BlobStore.S3AccessKeyID, "S3 access key id (empty: the standard AWS credential sources)")
	fs.StringVar(&s.BlobStore.S3SecretAccessKeyFile, "s3-secret-access-key-file", s.BlobStore.S3SecretAccessKeyFile, "file (mode 0600) holding the secret of --s3-access-key-id")

	fs.StringVar(&s.Encryption.KeyID, "encryption-key-id", s.Encryption.KeyID, "customer-managed key (vault key URL) for a fresh registry; default: platform-managed key")
	fs.StringVar(&s.Encryption.Identity, "encryption-identity", s.Encryption.Identity, "identity used to reach the customer-managed key: a managed identity's client id, or [system]")
	fs.DurationVar(&s.Encryption.KeyRotationCheckInterval, "key-rotation-check-interval", s.Encryption.KeyRotationCheckInterval, "how often a versionless key is checked for a newer version")
	fs.StringVar(&s.Encryption.VaultCAFile, "encryption-vault-ca-file", s.Encryption.VaultCAFile, "extra CA certificates (PEM) to trust when the encryption key is in another server's vault")
	fs.DurationVar(&s.Encryption.KeyAccessCheckInterval, "key-access-check-interval", s.Encryption.KeyAccessCheckInterval, "how often access to the encryption key is re-validated (at most 60s)")

	fs.StringSliceVar(&s.KMSPlugin.Sockets, "kms-plugin-socket", s.KMSPlugin.Sockets, "serve the Kubernetes KMS v2 plugin in-process on this unix socket (unix:///path, or unix:///path=CLUSTER; repeatable, one socket per cluster; mode 0600)")
	fs.StringVar(&s.KMSPlugin.Cluster, "kms-cluster", s.KMSPlugin.Cluster, "the cluster (coffer kms cluster create) served on the --kms-plugin-socket entries that name none")
	fs.DurationVar(&s.KMSPlugin.SelfTestInterval, "kms-self-test-interval", s.KMSPlugin.SelfTestInterval, "how often the in-process KMS plugin checks its key with a wrap and unwrap (Status answers from the last check)")
	fs.DurationVar(&s.KMSPlugin.PollInterval, "kms-key-rotation-poll", s.KMSPlugin.PollInterval, "how often the in-process KMS plugin reads its cluster's settings and the write key's newest version (jittered by up to a tenth)")
	fs.StringVar(&s.KMSPlugin.HealthListen, "kms-plugin-health-listen", s.KMSPlugin.HealthListen, "loopback address for the in-process KMS plugin's /healthz, /metrics and POST /poll (empty: off)")
}

// EnvName is the environment variable that sets the flag name.
func EnvName(flag string) string {
	return "COFFER_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Load completes s, whose flags are bound to fs (BindFlags) and parsed: it applies the
// environment and the configuration file to the flags (Apply), then reads the settings that
// are not flags (Azure) from the environment.
func Load(s *Server, fs *pflag.FlagSet, getenv func(string) string) error {
	if err := Apply(fs, getenv); err != nil {
		return err
	}
	s.Azure = AzureFromEnv(getenv)
	return nil
}

// Apply fills every flag of fs that was not given on the command line from the
// environment, then from the YAML file named by the "config" flag (if any).
func Apply(fs *pflag.FlagSet, getenv func(string) string) error {
	file := map[string]any{}
	cfgFlag := fs.Lookup("config")
	if cfgFlag != nil && !cfgFlag.Changed {
		if v := getenv(EnvName("config")); v != "" {
			if err := fs.Set("config", v); err != nil {
				return err
			}
		}
	}
	if cfgFlag != nil && cfgFlag.Value.String() != "" {
		raw, err := os.ReadFile(cfgFlag.Value.String())
		if err != nil {
			return fmt.Errorf("read configuration file: %w", err)
		}
		if err := yaml.Unmarshal(raw, &file); err != nil {
			return fmt.Errorf("parse configuration file %s: %w", cfgFlag.Value.String(), err)
		}
		var unknown []string
		for k := range file {
			if fs.Lookup(k) == nil {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return fmt.Errorf("configuration file %s: unknown keys %s (keys are the flag names of `coffer serve`)",
				cfgFlag.Value.String(), strings.Join(unknown, ", "))
		}
	}
	var firstErr error
	fs.VisitAll(func(f *pflag.Flag) {
		if firstErr != nil || f.Changed || f.Name == "config" {
			return
		}
		if v, ok := lookupEnv(getenv, EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				firstErr = fmt.Errorf("%s: %w", EnvName(f.Name), err)
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if err := setFromYAML(fs, f, v); err != nil {
				firstErr = fmt.Errorf("configuration file key %s: %w", f.Name, err)
			}
		}
	})
	return firstErr
}

func lookupEnv(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

func setFromYAML(fs *pflag.FlagSet, f *pflag.Flag, v any) error {
	if list, ok := v.([]any); ok {
		parts := make([]string, len(list))
		for i, x := range list {
			parts[i] = fmt.Sprint(x)
		}
		return fs.Set(f.Name, strings.Join(parts, ","))
	}
	return fs.Set(f.Name, fmt.Sprint(v))
}
