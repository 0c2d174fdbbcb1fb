package server

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/encryption"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek/resolve"
	"github.com/cofferhq/coffer/internal/kms"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/signatures"
	"github.com/cofferhq/coffer/internal/token"
	"github.com/cofferhq/coffer/internal/trust"
	"github.com/cofferhq/coffer/internal/vault"
)

// services are Coffer's parts without HTTP: phase one of the wiring. Each is built from
// concrete values of the ones above it; handlers (phase two) are built from these.
type services struct {
	audit    *audit.Log
	identity *identity.Service
	tokens   *token.Service
	access   *access.Service
	granter  *token.Granter
	vault    *vault.Service
	// vaultAddrs are where this server's vaults answer (the main listener is bound).
	vaultAddrs vault.Addresses
	encryption *encryption.Service
	trust      *trust.Service
	registry   *registry.Service
	signatures *signatures.Service
	// kms holds the KMS v2 plugin's cluster settings.
	kms *kms.Service
	// resolver reaches a key URL in-process or over REST (the in-process KMS plugin's keys
	// in other vaults).
	resolver *resolve.Resolver
	// identityHeader is the secret the managed-identity endpoint expects.
	identityHeader string
}

// registryGCGrace is how long unreferenced registry content is kept before collection.
const registryGCGrace = time.Hour

// buildServices builds every service in the order of the service graph:
// root key → audit, identity → tokens → access → vault → KEK resolver → encryption → registry.
func (s *Server) buildServices(ctx context.Context) (*services, error) {
	p := &services{}
	// The HSM, when configured, before the root key: it may seal it.
	tokenHSM, err := s.openHSM(ctx)
	if err != nil {
		return nil, err
	}
	// The vault root key first: the audit trail is keyed by a key derived from it, and
	// keeps its checkpoint beside it. The root key itself is cleared once the vault has
	// its own derived keys.
	root, where, err := loadRootKey(ctx, s.vaultRootKeyFile(), tokenHSM, s.cfg.Vault.RootKeyHSM)
	if err != nil {
		return nil, err
	}
	defer clear(root)
	s.log.Info("vault root key loaded", "from", where)
	auditKey, err := audit.DeriveKey(root)
	if err != nil {
		return nil, err
	}
	p.audit, err = audit.Open(ctx, s.db, s.log, audit.Options{Key: auditKey,
		Checkpoint: filepath.Join(filepath.Dir(s.vaultRootKeyFile()), "audit-checkpoint")})
	clear(auditKey) // audit keeps its own copy
	if err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	s.closers = append(s.closers, p.audit.Close)

	// Identities and tokens.
	if p.identity, err = identity.Open(ctx, s.db, identity.Options{}); err != nil {
		return nil, fmt.Errorf("identities: %w", err)
	}
	admin, err := s.bootstrapAdmin(ctx, p.identity)
	if err != nil {
		return nil, err
	}
	// The token signing keys and the identity-header secret live in the database, sealed
	// under the vault root key: every replica on it signs and checks with the same ones.
	// Earlier versions kept them in files of the data directory: those are imported once.
	keysDir := filepath.Join(s.cfg.DataDir, "keys")
	tokenSealer, err := token.NewSealer(root)
	if err != nil {
		return nil, err
	}
	ks, err := token.OpenKeySet(ctx, token.KeySetOptions{DB: s.db, Sealer: tokenSealer,
		ImportDir:   filepath.Join(keysDir, "token-signing"),
		RotateAfter: s.cfg.TokenKeyRotation, KeepAfterRetire: s.cfg.TokenTTL + token.DefaultLeeway + time.Minute})
	if err != nil {
		return nil, fmt.Errorf("token signing keys: %w", err)
	}
	p.tokens = token.NewService(ks, token.Options{TenantID: p.identity.TenantID(), TTL: s.cfg.TokenTTL, Principals: p.identity})
	headerFile := filepath.Join(keysDir, "identity-header")
	if p.identityHeader, err = ks.Secret(ctx, "identity-header", headerFile); err != nil {
		return nil, fmt.Errorf("managed identity header secret: %w", err)
	}
	// A copy for the operator who hands it to the workloads (IDENTITY_HEADER); the
	// database's value is the one checked.
	if err := writeSecretCopy(headerFile, p.identityHeader); err != nil {
		return nil, fmt.Errorf("managed identity header secret: %w", err)
	}

	// Access: roles, assignments, policies, repository tokens; the one Authorize.
	if p.access, err = access.New(ctx, s.db, p.identity, access.Options{}); err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	// A deleted principal's role assignments and access policies go with it, so that a
	// later principal can never inherit them.
	p.identity.OnDeleted(func(ctx context.Context, pr identity.Principal) error {
		return p.access.DeletePrincipalGrants(ctx, pr.ID)
	})
	if err := p.access.EnsureBootstrapOwner(ctx, admin); err != nil {
		return nil, fmt.Errorf("make the administrator Owner: %w", err)
	}
	p.granter = token.NewGranter(token.GranterOptions{
		Authorizer:      p.access,
		AnonymousPull:   s.cfg.Registry.AnonymousPull,
		VaultResource:   token.VaultResource(s.cfg.Vault.Domain),
		OwnRegistryHost: s.ownRegistryHost,
		Log:             s.log,
	})

	// The key vault.
	p.vaultAddrs = s.vaultAddresses()
	p.vault, err = vault.New(ctx, vault.Options{
		DB: s.db, Log: s.log, Audit: p.audit, RootKey: root,
		Authorizer: p.access,
		Addresses:  p.vaultAddrs,
		Policies:   p.access, // a deleted vault's access policies go with it
		HSM:        vaultHSM(tokenHSM), HSMAllVaults: s.cfg.Vault.HSMAllVaults,
	})
	clear(root)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}

	// Encryption at rest: the KEK resolver reaches a key URL in-process or over REST.
	az := s.cfg.Azure
	res, err := resolve.New(resolve.Options{
		Vault: p.vault, Local: p.vault, Identities: p.identity,
		Credential: resolve.Credential{TenantID: az.TenantID, ClientID: az.ClientID, ClientSecret: az.ClientSecret, AuthorityHost: az.AuthorityHost},
		CAFile:     s.cfg.Encryption.VaultCAFile,
	})
	if err != nil {
		return nil, err
	}
	p.resolver = res
	p.encryption, err = encryption.Open(ctx, encryption.Options{
		DB: s.db, Resolver: res, Vault: p.vault, Identities: p.identity, Policies: p.access,
		PlatformVaultURL:      p.vaultAddrs.Scheme + "://" + encryption.PlatformVaultName + "." + s.cfg.Vault.Domain,
		KeyID:                 s.cfg.Encryption.KeyID,
		Identity:              s.cfg.Encryption.Identity,
		AccessCheckInterval:   s.cfg.Encryption.KeyAccessCheckInterval,
		RotationCheckInterval: s.cfg.Encryption.KeyRotationCheckInterval,
		Metrics:               encryption.NewMetrics(s.metrics),
		Log:                   s.log.With("part", "encryption"),
	})
	if err != nil {
		return nil, fmt.Errorf("encryption at rest: %w", err)
	}
	// An identity the encryption reaches its key with cannot be deleted.
	p.identity.AddDeleteGuard(p.encryption.GuardIdentityRemoval)

	// The blob store every replica shares: registry content, content-trust metadata.
	base, err := s.blobStore(ctx)
	if err != nil {
		return nil, fmt.Errorf("registry blob store: %w", err)
	}

	// Content trust: metadata sealed in the blob store (under trust/), server-held keys in
	// the vault. Earlier versions kept the metadata in <data-dir>/trust: moved once.
	if n, err := moveTrustDir(ctx, filepath.Join(s.cfg.DataDir, "trust"), base); err != nil {
		return nil, fmt.Errorf("content trust store: %w", err)
	} else if n > 0 {
		s.log.Info("content trust metadata moved into the blob store", "objects", n)
	}
	p.trust, err = trust.Open(ctx, trust.Options{
		DB: s.db, Blobs: p.encryption.Driver(base), Vault: p.vault, Lock: s.db.Lock,
		Grant: func(ctx context.Context, v, objectID string, perms []string) error {
			_, err := p.access.SetPolicy(ctx, v, objectID, perms)
			return err
		},
		Identity: p.identity.SystemIdentity(),
		OwnHost:  s.ownRegistryHost,
		Log:      s.log.With("part", "trust"),
	})
	if err != nil {
		return nil, err
	}

	// The KMS v2 clusters' settings: PMKs in a platform vault, CMKs checked as the plugin's
	// identity through the same KEK resolver.
	p.kms, err = kms.New(ctx, kms.Options{
		DB: s.db, Vault: p.vault, Local: p.vault, Resolver: res, Identities: p.identity, Policies: p.access, Audit: p.audit,
		PlatformVaultURL: p.vaultAddrs.Scheme + "://" + kms.PlatformVaultName + "." + s.cfg.Vault.Domain,
		Log:              s.log.With("part", "kms"),
	})
	if err != nil {
		return nil, fmt.Errorf("kms: %w", err)
	}

	// The registry: every byte through the sealing driver.
	meta, err := registry.NewSQLMetadata(ctx, s.db)
	if err != nil {
		return nil, fmt.Errorf("registry metadata: %w", err)
	}
	s.closers = append(s.closers, meta.Close)
	sealed := p.encryption.Driver(base)
	p.registry = registry.New(sealed, meta, registry.Options{
		MaxManifestSize: s.cfg.Registry.MaxManifestSize,
		UploadExpiry:    s.cfg.Registry.UploadExpiry,
		GCGrace:         cmp.Or(s.cfg.Registry.GCGrace, registryGCGrace),
		Lock:            s.db.Lock, // the per-digest lock every replica on the database shares
		Log:             s.log.With("part", "registry"),
		Metrics:         s.registryMetrics(meta),
		// A deleted repository's trust data and keys go with it.
		OnRepositoryDeleted: p.trust.DeleteRepository,
	})

	// The signature policy reads signatures from the registry in-process.
	sigStore, err := signatures.OpenSQLStore(ctx, s.db)
	if err != nil {
		return nil, fmt.Errorf("signature policy: %w", err)
	}
	if p.signatures, err = signatures.New(ctx, signatures.Options{
		Store: sigStore, Registry: p.registry, Audit: p.audit, Authorizer: p.access, Metrics: signatures.NewMetrics(s.metrics),
		RegistryHost: s.registryHost(), Log: s.log.With("part", "signatures"),
		Vault: p.vault, VaultIdentity: p.identity.SystemIdentity(), // cosign keys held in a vault
	}); err != nil {
		return nil, fmt.Errorf("signature policy: %w", err)
	}

	s.background = append(s.background, p.encryption.Run, s.vaultJobs(p.vault), s.registryJobs(p.registry), s.sealUpgrade(sealed))
	s.background = append(s.background, p.signatures.Run) // refreshes cosign keys held in a vault
	return p, nil
}

// vaultRootKeyFile is where the vault root key lives unless configured elsewhere.
func (s *Server) vaultRootKeyFile() string {
	if s.cfg.Vault.RootKeyFile != "" {
		return s.cfg.Vault.RootKeyFile
	}
	return filepath.Join(s.cfg.DataDir, "keys", "vault-root.key")
}

// vaultAddresses are where this server's vaults answer; the main listener is bound, so
// the port is known.
func (s *Server) vaultAddresses() vault.Addresses {
	a := vault.Addresses{Scheme: "https", Domain: s.cfg.Vault.Domain, Hostnames: s.cfg.Hostnames}
	if s.cfg.PlainHTTP {
		a.Scheme = "http"
	}
	a.ListenHost, _, _ = net.SplitHostPort(s.cfg.Listen)
	if tcp, ok := s.listener.Addr().(*net.TCPAddr); ok {
		a.Port = tcp.Port
	}
	return a
}

// ownRegistryHost reports whether hostport ("host" or "host:port", as in a content-trust
// GUN) names this registry: a name of this server on its port (no port: 443).
func (s *Server) ownRegistryHost(hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, "443"
	}
	host = strings.Trim(host, "[]")
	a := s.vaultAddresses()
	if port != strconv.Itoa(a.Port) {
		return false
	}
	if a.IsLocalHost(host) {
		return true
	}
	h, err := os.Hostname()
	return err == nil && strings.EqualFold(h, host)
}

// registryHost is the host the signature policy puts in front of a repository to match
// notation registryScopes: the first --hostname, else the listen address.
func (s *Server) registryHost() string {
	if len(s.cfg.Hostnames) > 0 {
		return s.cfg.Hostnames[0]
	}
	if tcp, ok := s.listener.Addr().(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		return net.JoinHostPort("localhost", fmt.Sprint(tcp.Port))
	}
	return s.listener.Addr().String()
}
