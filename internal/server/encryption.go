package server

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/encryption"
	"github.com/cofferhq/coffer/internal/encryption/encryptionapi"
	"github.com/cofferhq/coffer/internal/kek/resolve"
	"github.com/cofferhq/coffer/internal/vault"
)

// mountEncryption wires encryption at rest (package encryption). It runs after the vault
// and before the registry: the service makes sure the registry has a root key, the
// registry's blob driver is wrapped in the sealing driver, /coffer/v1/registry/encryption
// is mounted, the key checks run in the background and the deletion of an identity the
// encryption uses is refused.
func (s *Server) mountEncryption(ctx context.Context) error {
	if s.vault.svc == nil || s.identity.svc == nil || s.access.svc == nil {
		return errors.New("encryption at rest needs the identity, access and vault parts")
	}
	log := s.log.With("part", "encryption")
	local := localVaults{s}
	az := s.cfg.Azure
	res, err := resolve.New(resolve.Options{
		Vault: s.vault.svc, Local: local, Identities: s.identity.svc,
		Credential: resolve.Credential{TenantID: az.TenantID, ClientID: az.ClientID, ClientSecret: az.ClientSecret, AuthorityHost: az.AuthorityHost},
		CAFile:     s.cfg.Encryption.VaultCAFile,
	})
	if err != nil {
		return err
	}
	scheme := "https"
	if s.cfg.PlainHTTP {
		scheme = "http"
	}
	enc, err := encryption.Open(ctx, encryption.Options{
		DB: s.db, Resolver: res, Vault: s.vault.svc, Identities: s.identity.svc, Policies: s.access.svc,
		PlatformVaultURL:      scheme + "://" + encryption.PlatformVaultName + "." + s.cfg.Vault.Domain,
		KeyID:                 s.cfg.Encryption.KeyID,
		Identity:              s.cfg.Encryption.Identity,
		AccessCheckInterval:   s.cfg.Encryption.KeyAccessCheckInterval,
		RotationCheckInterval: s.cfg.Encryption.KeyRotationCheckInterval,
		Log:                   log,
	})
	if err != nil {
		return err
	}
	s.registry.wrapDriver = func(ctx context.Context, base blobstore.Driver) (blobstore.Driver, error) {
		return enc.Driver(base), nil
	}
	s.identity.svc.AddDeleteGuard(enc.GuardIdentityRemoval)
	s.background = append(s.background, enc.Run)
	encryptionapi.New(enc, s.identity.verifier, s.access.authz, log).Register(s.mux)
	return nil
}

// localVaults tells whether a vault URL (scheme://host[:port]) addresses one of this
// server's vaults, and which: NAME.<vault domain> on the main port (or with no port), or a
// local host name on a vault's own port. (It moves to the vault part.)
type localVaults struct{ s *Server }

func (l localVaults) LocalVault(ctx context.Context, vaultURL string) (string, bool, error) {
	s := l.s
	u, err := url.Parse(vaultURL)
	if err != nil {
		return "", false, nil
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if name, ok := strings.CutSuffix(host, "."+strings.ToLower(s.cfg.Vault.Domain)); ok && name != "" && !strings.Contains(name, ".") {
		main := s.mainPort()
		if port != "" && main != "" && main != "0" && port != main {
			return "", false, nil // the same domain on another server
		}
		if _, err := s.vault.svc.LookupVault(ctx, name); err != nil {
			if errors.Is(err, vault.ErrNotFound) {
				return "", false, nil
			}
			return "", false, err
		}
		return name, true, nil
	}
	if port == "" || !l.isLocalHost(host) {
		return "", false, nil
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", false, nil
	}
	s.vault.mu.Lock()
	name := s.vault.portVaults[p]
	s.vault.mu.Unlock()
	return name, name != "", nil
}

func (l localVaults) isLocalHost(host string) bool {
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return true
	}
	if lh := l.s.listenHost(); lh != "" && strings.EqualFold(lh, host) {
		return true
	}
	for _, h := range l.s.cfg.Hostnames {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}
