package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/kek/inproc"
	"github.com/cofferhq/coffer/internal/kek/rest"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/seal"
	"github.com/cofferhq/coffer/internal/seal/keyring"
	"github.com/cofferhq/coffer/internal/vault"
)

// The platform-managed key: created on first start in a vault of Coffer's own.
const (
	platformVaultName = "coffer-platform"
	platformKeyName   = "registry-encryption"
	// platformKeyRotation is the platform key's rotation policy (ISO 8601 duration).
	platformKeyRotation = "P90D"
)

// encryption is the state of encryption at rest (docs/encryption.md): the keyring, and
// the KEK drivers it reaches the key with.
type encryption struct {
	s    *Server
	keys *keyring.Keyring
	log  *slog.Logger

	mu   sync.Mutex
	rest map[string]*rest.Driver // by identity + vault URL
}

// mountEncryption wires encryption at rest. It runs after the vault and before the
// registry: it makes sure the registry has a root key (creating the platform key, or using
// --encryption-key-id, on first start), wraps the registry's blob driver in the sealing
// driver, mounts /coffer/v1/registry/encryption, runs the key access and rotation checks
// in the background and refuses the deletion of an identity the encryption uses.
func (s *Server) mountEncryption(ctx context.Context) error {
	if s.vault.svc == nil || s.identity.svc == nil || s.access.svc == nil {
		return errors.New("encryption at rest needs the identity, access and vault parts")
	}
	e := &encryption{s: s, log: s.log.With("part", "encryption"), rest: map[string]*rest.Driver{}}
	interval := s.cfg.Encryption.KeyAccessCheckInterval
	if interval <= 0 || interval > 60*time.Second {
		return fmt.Errorf("--key-access-check-interval must be between 0 and 60s (got %s): revocation must take effect within a minute", interval)
	}
	kr, err := keyring.Open(ctx, keyring.Options{
		DB: s.db, Resolver: e, Log: e.log,
		AccessCheckInterval:   interval,
		RotationCheckInterval: s.cfg.Encryption.KeyRotationCheckInterval,
	})
	if err != nil {
		return err
	}
	e.keys = kr
	st, err := kr.Settings()
	switch {
	case errors.Is(err, keyring.ErrNotInitialized):
		if err := e.initialize(ctx); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		if s.cfg.Encryption.KeyID != "" && s.cfg.Encryption.KeyID != st.KeyID {
			e.log.Warn("--encryption-key-id only applies to a fresh registry; this one is encrypted under another key: use `coffer registry encryption rotate-key` to change it",
				"configured", s.cfg.Encryption.KeyID, "in_use", st.KeyID)
		}
		// A key that cannot be used now does not stop the server: reads and writes are
		// refused with the cause until access comes back.
		if err := kr.CheckAccess(ctx); err != nil {
			e.log.Error("the registry's encryption key is not accessible; registry reads and writes are refused until access is restored", "key", st.VersionedKeyID, "err", err)
		}
	}
	s.registry.wrapDriver = func(ctx context.Context, base blobstore.Driver) (blobstore.Driver, error) {
		return seal.NewDriver(base, kr), nil
	}
	s.identity.svc.AddDeleteGuard(func(ctx context.Context, p identity.Principal) error {
		return kr.GuardIdentityRemoval(p.ID, p.ClientID)
	})
	s.background = append(s.background, kr.Run)
	e.mountAPI()
	return nil
}

// initialize creates the registry's root key on first start.
func (e *encryption) initialize(ctx context.Context) error {
	cfg := e.s.cfg.Encryption
	if cfg.KeyID != "" {
		ident := cfg.Identity
		if ident == "" {
			ident = keyring.SystemIdentity
		}
		if err := e.keys.Initialize(ctx, keyring.SourceCustomer, cfg.KeyID, ident); err != nil {
			return fmt.Errorf("encrypt the new registry with the customer-managed key %s as identity %s: %w", cfg.KeyID, ident, err)
		}
		e.log.Info("registry encrypted with a customer-managed key", "key", cfg.KeyID, "identity", ident)
		return nil
	}
	keyID, err := e.ensurePlatformKey(ctx)
	if err != nil {
		return fmt.Errorf("create the platform-managed encryption key: %w", err)
	}
	if err := e.keys.Initialize(ctx, keyring.SourcePlatform, keyID, keyring.SystemIdentity); err != nil {
		return fmt.Errorf("encrypt the new registry with the platform-managed key: %w", err)
	}
	e.log.Info("registry encrypted with the platform-managed key", "key", keyID)
	return nil
}

// ensurePlatformKey creates (or finds, after an interrupted first start) the platform
// vault and key, with a rotation policy, and lets the system identity use the key. It
// returns the versionless key id, so new versions made by the rotation policy are picked up.
func (e *encryption) ensurePlatformKey(ctx context.Context) (string, error) {
	svc := e.s.vault.svc
	asServer := vault.AsServer(ctx)
	none := identity.Principal{}
	if _, err := svc.LookupVault(ctx, platformVaultName); errors.Is(err, vault.ErrNotFound) {
		if _, err := svc.CreateVault(asServer, none, vault.Vault{Name: platformVaultName, EnablePurgeProtection: true, SoftDeleteRetentionDays: 90}); err != nil {
			return "", fmt.Errorf("create vault %s: %w", platformVaultName, err)
		}
	} else if err != nil {
		return "", err
	}
	if _, err := svc.GetKey(asServer, none, platformVaultName, platformKeyName, ""); errors.Is(err, vault.ErrNotFound) {
		if _, err := svc.CreateKey(asServer, none, platformVaultName, platformKeyName, vault.CreateKeyParams{
			Kty: "RSA", Size: 3072, KeyOps: []string{"wrapKey", "unwrapKey"},
			Tags: map[string]string{"purpose": "coffer registry encryption at rest"},
		}); err != nil {
			return "", fmt.Errorf("create key %s: %w", platformKeyName, err)
		}
	} else if err != nil {
		return "", err
	}
	var pol vault.RotationPolicy
	rot := vault.LifetimeAction{}
	rot.Trigger.TimeAfterCreate = platformKeyRotation
	rot.Action.Type = "Rotate"
	pol.LifetimeActions = []vault.LifetimeAction{rot}
	if _, err := svc.SetRotationPolicy(asServer, none, platformVaultName, platformKeyName, pol); err != nil {
		return "", fmt.Errorf("set the rotation policy of %s: %w", platformKeyName, err)
	}
	sys := e.s.identity.svc.SystemIdentity()
	if _, err := e.s.access.svc.SetPolicy(ctx, platformVaultName, sys.ID, []string{"get", "wrapKey", "unwrapKey"}); err != nil {
		return "", fmt.Errorf("grant the registry's identity access to %s: %w", platformKeyName, err)
	}
	scheme := "https"
	if e.s.cfg.PlainHTTP {
		scheme = "http"
	}
	return scheme + "://" + platformVaultName + "." + e.s.cfg.Vault.Domain + "/keys/" + platformKeyName, nil
}

// localVault tells whether a vault URL addresses one of this server's vaults, and which.
func (e *encryption) localVault(ctx context.Context, vaultURL string) (string, bool, error) {
	return e.s.vault.svc.LocalVault(ctx, vaultURL)
}

// KEK implements keyring.Resolver: the in-process driver for this server's vaults (as the
// identity's principal), the REST driver for any other vault (with the identity's
// credential).
func (e *encryption) KEK(ctx context.Context, ident, keyID string) (kek.KEK, error) {
	id, err := kek.ParseKeyID(keyID)
	if err != nil {
		return nil, err
	}
	if _, local, err := e.localVault(ctx, id.Vault); err != nil {
		return nil, err
	} else if local {
		p, err := e.principal(ctx, ident)
		if err != nil {
			return nil, err
		}
		return inproc.New(e.s.vault.svc, p, e.localVault), nil
	}
	return e.remote(ident, id.Vault)
}

// principal resolves the identity the registry acts as in its own vaults.
func (e *encryption) principal(ctx context.Context, ident string) (identity.Principal, error) {
	if ident == "" || ident == keyring.SystemIdentity {
		return e.s.identity.svc.SystemIdentity(), nil
	}
	p, err := e.s.identity.svc.Resolve(ctx, ident)
	if err != nil {
		return identity.Principal{}, fmt.Errorf("identity %s: %w", ident, err)
	}
	if p.Kind != identity.KindManagedIdentity && p.Kind != identity.KindSystemIdentity {
		return identity.Principal{}, fmt.Errorf("identity %s is a %s: the registry reaches its key as a managed identity (coffer identity create NAME) or as [system]", ident, p.Kind)
	}
	return p, nil
}

// remote returns the REST driver for a vault of another server (or Azure Key Vault). The
// credential follows the Azure SDK's conventions: client credentials from AZURE_TENANT_ID,
// AZURE_CLIENT_ID, AZURE_CLIENT_SECRET (and AZURE_AUTHORITY_HOST) when AZURE_CLIENT_ID names
// the identity (or the identity is [system]); otherwise the managed-identity endpoint
// (IDENTITY_ENDPOINT and IDENTITY_HEADER), asking for the identity's client id.
func (e *encryption) remote(ident, vaultURL string) (kek.KEK, error) {
	cacheKey := ident + "\x00" + vaultURL
	e.mu.Lock()
	defer e.mu.Unlock()
	if d, ok := e.rest[cacheKey]; ok {
		return d, nil
	}
	hc, err := e.httpClient()
	if err != nil {
		return nil, err
	}
	opts := policy.ClientOptions{Transport: hc}
	var cred azcore.TokenCredential
	clientID, secret := os.Getenv("AZURE_CLIENT_ID"), os.Getenv("AZURE_CLIENT_SECRET")
	if secret != "" && clientID != "" && (ident == "" || ident == keyring.SystemIdentity || strings.EqualFold(ident, clientID)) {
		copts := &azidentity.ClientSecretCredentialOptions{ClientOptions: opts}
		if a := os.Getenv("AZURE_AUTHORITY_HOST"); a != "" {
			copts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: a}
			copts.DisableInstanceDiscovery = true
		}
		cred, err = azidentity.NewClientSecretCredential(os.Getenv("AZURE_TENANT_ID"), clientID, secret, copts)
	} else {
		mopts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts}
		if ident != "" && ident != keyring.SystemIdentity {
			mopts.ID = azidentity.ClientID(ident)
		}
		cred, err = azidentity.NewManagedIdentityCredential(mopts)
	}
	if err != nil {
		return nil, fmt.Errorf("credential for identity %s to reach %s: %w", ident, vaultURL, err)
	}
	// A vault addressed by IP address or localhost (a vault on a port of its own) cannot
	// have a challenge resource that is a parent domain of its host.
	host := vaultURL
	if u, err := url.Parse(vaultURL); err == nil {
		host = u.Hostname()
	}
	byAddress := host == "localhost" || net.ParseIP(host) != nil
	d := rest.New(cred, &rest.Options{ClientOptions: opts, DisableChallengeResourceVerification: byAddress})
	e.rest[cacheKey] = d
	return d, nil
}

// httpClient trusts the system roots plus --encryption-vault-ca-file.
func (e *encryption) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if f := e.s.cfg.Encryption.VaultCAFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read --encryption-vault-ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--encryption-vault-ca-file %s holds no PEM certificate", f)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: time.Minute}, nil
}

// ---- management API: /coffer/v1/registry/encryption ----

// encryptionRequest is the body of enable and rotate-key.
type encryptionRequest struct {
	KeyEncryptionKey string `json:"keyEncryptionKey"`
	Identity         string `json:"identity,omitempty"`
}

func (e *encryption) mountAPI() {
	p := mgmt.Prefix + "/registry/encryption"
	routes := map[string]http.HandlerFunc{
		"GET " + p:                  e.show,
		"POST " + p + "/enable":     e.enable,
		"POST " + p + "/rotate-key": e.rotate,
		"POST " + p + "/disable":    e.disable,
		"POST " + p + "/rotation":   e.checkRotation,
	}
	for pattern, h := range routes {
		e.s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v := e.s.identity.verifier
			if v == nil {
				mgmt.WriteError(w, http.StatusServiceUnavailable, mgmt.CodeInternal, "the token service is not available")
				return
			}
			mgmt.Protect(v, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !mgmt.Authorize(w, r, lazyAuthorizer{e.s}, access.RegistryManage, access.Scope("/registry")) {
					return
				}
				h(w, r)
			})).ServeHTTP(w, r)
		}))
	}
}

func (e *encryption) show(w http.ResponseWriter, r *http.Request) {
	st, err := e.keys.Status(r.Context(), true)
	if err != nil {
		e.writeError(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, st)
}

func (e *encryption) change(w http.ResponseWriter, r *http.Request, do func(ctx context.Context, keyID, ident string) (keyring.Settings, error)) {
	var req encryptionRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	if req.KeyEncryptionKey == "" {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "keyEncryptionKey is required: the key id of an RSA key, https://VAULT-HOST/keys/NAME[/VERSION]")
		return
	}
	if _, err := do(r.Context(), req.KeyEncryptionKey, req.Identity); err != nil {
		e.writeError(w, err)
		return
	}
	e.show(w, r)
}

func (e *encryption) enable(w http.ResponseWriter, r *http.Request) {
	e.change(w, r, func(ctx context.Context, keyID, ident string) (keyring.Settings, error) {
		if ident == "" {
			ident = keyring.SystemIdentity
		}
		return e.keys.Enable(ctx, keyID, ident)
	})
}

func (e *encryption) rotate(w http.ResponseWriter, r *http.Request) {
	e.change(w, r, e.keys.Rotate)
}

func (e *encryption) disable(w http.ResponseWriter, r *http.Request) {
	e.writeError(w, e.keys.Disable(r.Context()))
}

// checkRotation runs the automatic rotation check now (operators and tests need not wait
// for --key-rotation-check-interval).
func (e *encryption) checkRotation(w http.ResponseWriter, r *http.Request) {
	if _, err := e.keys.CheckRotation(r.Context()); err != nil {
		e.writeError(w, err)
		return
	}
	e.show(w, r)
}

func (e *encryption) writeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, keyring.ErrAlreadyEnabled), errors.Is(err, keyring.ErrCannotDisable):
		mgmt.WriteError(w, http.StatusConflict, mgmt.CodeConflict, err.Error())
	case errors.Is(err, kek.ErrInvalidKeyID), errors.Is(err, kek.ErrUnsupportedKeyType), errors.Is(err, kek.ErrForbidden),
		errors.Is(err, kek.ErrNotFound), errors.Is(err, kek.ErrDisabled), errors.Is(err, kek.ErrNetworkDenied),
		errors.Is(err, kek.ErrInvalid), errors.Is(err, identity.ErrNotFound), errors.Is(err, identity.ErrInvalid):
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, err.Error())
	case errors.Is(err, seal.ErrKeyUnavailable), errors.Is(err, kek.ErrUnavailable):
		mgmt.WriteError(w, http.StatusServiceUnavailable, mgmt.CodeInternal, err.Error())
	default:
		e.log.Error("registry encryption request failed", "err", err)
		mgmt.WriteError(w, http.StatusInternalServerError, mgmt.CodeInternal, "the request failed; see the server log")
	}
}
