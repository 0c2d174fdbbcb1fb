// Package encryption is the registry's encryption at rest as a feature (docs/encryption.md):
// it opens the keyring (package seal/keyring) with a KEK resolver, makes sure the registry
// has a root key on first start (creating the platform-managed key in a vault of Coffer's
// own, or using a customer-managed key), wraps the registry's blob driver in the sealing
// driver, and offers the operator's commands (show, enable, rotate-key, disable, the
// rotation check), the guard that keeps an identity in use from being deleted and the
// background key access and rotation checks. It knows nothing of HTTP: the management
// handlers are in encryption/encryptionapi.
package encryption

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/seal"
	"github.com/cofferhq/coffer/internal/seal/keyring"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vault"
)

// The platform-managed key: created on first start in a vault of Coffer's own.
const (
	PlatformVaultName = "coffer-platform"
	PlatformKeyName   = "registry-encryption"
	// platformKeyRotation is the platform key's rotation policy (ISO 8601 duration).
	platformKeyRotation = "P90D"
)

// SystemIdentities gives the registry's own identity.
type SystemIdentities interface {
	SystemIdentity() identity.Principal
}

// Policies sets a vault access policy (access.Service).
type Policies interface {
	SetPolicy(ctx context.Context, vault, objectID string, keyPermissions []string) (access.AccessPolicy, error)
}

// Options configure the service.
type Options struct {
	DB *store.DB
	// Resolver reaches a key as an identity (kek/resolve).
	Resolver keyring.Resolver
	// Vault is where the platform-managed key is created on first start.
	Vault *vault.Service
	// Identities gives the system identity that is granted the platform key.
	Identities SystemIdentities
	// Policies grants the system identity the platform key.
	Policies Policies
	// PlatformVaultURL is the URL of the platform vault, the base of the platform key's id
	// (https://coffer-platform.<vault domain>).
	PlatformVaultURL string

	// KeyID and Identity are the customer-managed key and the identity that reaches it for a
	// fresh registry (--encryption-key-id, --encryption-identity); with no KeyID the
	// platform-managed key is created.
	KeyID    string
	Identity string
	// AccessCheckInterval is how often access to the key is re-validated: more than 0 and at
	// most 60s (revocation must take effect within a minute).
	AccessCheckInterval time.Duration
	// RotationCheckInterval is how often a versionless key is checked for a newer version.
	RotationCheckInterval time.Duration
	// Metrics, if set, counts the bytes sealed and opened and the key access checks.
	Metrics *Metrics
	Log     *slog.Logger
}

// Service is encryption at rest of one registry.
type Service struct {
	keys    *keyring.Keyring
	metrics *Metrics
	log     *slog.Logger
}

// Open opens the keyring and makes sure the registry has a root key. On first start it
// encrypts the registry with o.KeyID (as o.Identity, [system] by default) or creates the
// platform-managed key. Later, a key that cannot be used does not stop the start: reads and
// writes are refused with the cause until access comes back.
func Open(ctx context.Context, o Options) (*Service, error) {
	if o.DB == nil || o.Resolver == nil || o.Vault == nil || o.Identities == nil || o.Policies == nil {
		return nil, errors.New("encryption at rest needs the metadata store, a KEK resolver, the vault, the identities and the access policies")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if interval := o.AccessCheckInterval; interval <= 0 || interval > 60*time.Second {
		return nil, fmt.Errorf("--key-access-check-interval must be between 0 and 60s (got %s): revocation must take effect within a minute", interval)
	}
	kr, err := keyring.Open(ctx, keyring.Options{
		DB: o.DB, Resolver: o.Resolver, Log: o.Log,
		AccessCheckInterval:   o.AccessCheckInterval,
		RotationCheckInterval: o.RotationCheckInterval,
		Checked:               o.Metrics.checked,
	})
	if err != nil {
		return nil, err
	}
	s := &Service{keys: kr, metrics: o.Metrics, log: o.Log}
	o.Metrics.watch(kr)
	st, err := kr.Settings()
	switch {
	case errors.Is(err, keyring.ErrNotInitialized):
		if err := s.initialize(ctx, o); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		if o.KeyID != "" && o.KeyID != st.KeyID {
			s.log.Warn("--encryption-key-id only applies to a fresh registry; this one is encrypted under another key: use `coffer registry encryption rotate-key` to change it",
				"configured", o.KeyID, "in_use", st.KeyID)
		}
		if err := kr.CheckAccess(ctx); err != nil {
			s.log.Error("the registry's encryption key is not accessible; registry reads and writes are refused until access is restored", "key", st.VersionedKeyID, "err", err)
		}
	}
	return s, nil
}

// initialize creates the registry's root key on first start.
func (s *Service) initialize(ctx context.Context, o Options) error {
	if o.KeyID != "" {
		ident := o.Identity
		if ident == "" {
			ident = keyring.SystemIdentity
		}
		if err := s.keys.Initialize(ctx, keyring.SourceCustomer, o.KeyID, ident); err != nil {
			return fmt.Errorf("encrypt the new registry with the customer-managed key %s as identity %s: %w", o.KeyID, ident, err)
		}
		s.log.Info("registry encrypted with a customer-managed key", "key", o.KeyID, "identity", ident)
		return nil
	}
	keyID, err := ensurePlatformKey(ctx, o)
	if err != nil {
		return fmt.Errorf("create the platform-managed encryption key: %w", err)
	}
	if err := s.keys.Initialize(ctx, keyring.SourcePlatform, keyID, keyring.SystemIdentity); err != nil {
		return fmt.Errorf("encrypt the new registry with the platform-managed key: %w", err)
	}
	s.log.Info("registry encrypted with the platform-managed key", "key", keyID)
	return nil
}

// ensurePlatformKey creates (or finds, after an interrupted first start) the platform
// vault and key, with a rotation policy, and lets the system identity use the key. It
// returns the versionless key id, so new versions made by the rotation policy are picked up.
func ensurePlatformKey(ctx context.Context, o Options) (string, error) {
	svc := o.Vault
	asServer := vault.AsServer(ctx)
	none := identity.Principal{}
	if _, err := svc.LookupVault(ctx, PlatformVaultName); errors.Is(err, vault.ErrNotFound) {
		if _, err := svc.CreateVault(asServer, none, vault.Vault{Name: PlatformVaultName, EnablePurgeProtection: true, SoftDeleteRetentionDays: 90}); err != nil {
			return "", fmt.Errorf("create vault %s: %w", PlatformVaultName, err)
		}
	} else if err != nil {
		return "", err
	}
	if _, err := svc.GetKey(asServer, none, PlatformVaultName, PlatformKeyName, ""); errors.Is(err, vault.ErrNotFound) {
		if _, err := svc.CreateKey(asServer, none, PlatformVaultName, PlatformKeyName, vault.CreateKeyParams{
			Kty: "RSA", Size: 3072, KeyOps: []string{"wrapKey", "unwrapKey"},
			Tags: map[string]string{"purpose": "coffer registry encryption at rest"},
		}); err != nil {
			return "", fmt.Errorf("create key %s: %w", PlatformKeyName, err)
		}
	} else if err != nil {
		return "", err
	}
	var pol vault.RotationPolicy
	rot := vault.LifetimeAction{}
	rot.Trigger.TimeAfterCreate = platformKeyRotation
	rot.Action.Type = "Rotate"
	pol.LifetimeActions = []vault.LifetimeAction{rot}
	if _, err := svc.SetRotationPolicy(asServer, none, PlatformVaultName, PlatformKeyName, pol); err != nil {
		return "", fmt.Errorf("set the rotation policy of %s: %w", PlatformKeyName, err)
	}
	sys := o.Identities.SystemIdentity()
	if _, err := o.Policies.SetPolicy(ctx, PlatformVaultName, sys.ID, []string{"get", "wrapKey", "unwrapKey"}); err != nil {
		return "", fmt.Errorf("grant the registry's identity access to %s: %w", PlatformKeyName, err)
	}
	return o.PlatformVaultURL + "/keys/" + PlatformKeyName, nil
}

// Driver wraps the registry's blob driver in the sealing driver: everything stored is
// encrypted under the registry's keys.
func (s *Service) Driver(base blobstore.Driver) *seal.Driver {
	return seal.NewDriver(base, s.keys, s.metrics.driverOptions()...)
}

// GuardIdentityRemoval refuses the deletion of an identity the registry reaches its key as
// (an identity.DeleteGuard).
func (s *Service) GuardIdentityRemoval(ctx context.Context, p identity.Principal) error {
	return s.keys.GuardIdentityRemoval(p.ID, p.ClientID)
}

// Run runs the key access and rotation checks until ctx is done.
func (s *Service) Run(ctx context.Context) { s.keys.Run(ctx) }

// Show reports the settings and whether the key is accessible now (it checks with the vault).
func (s *Service) Show(ctx context.Context) (keyring.Status, error) {
	return s.keys.Status(ctx, true)
}

// Enable moves the registry to the customer-managed key keyID, reached as ident ([system]
// when empty), after checking the key and the identity's permissions.
func (s *Service) Enable(ctx context.Context, keyID, ident string) (keyring.Settings, error) {
	if ident == "" {
		ident = keyring.SystemIdentity
	}
	return s.keys.Enable(ctx, keyID, ident)
}

// Rotate re-wraps the registry's root keys under keyID as ident (the identity in use when
// empty).
func (s *Service) Rotate(ctx context.Context, keyID, ident string) (keyring.Settings, error) {
	return s.keys.Rotate(ctx, keyID, ident)
}

// Disable is refused: customer-managed key encryption cannot be disabled once enabled.
func (s *Service) Disable(ctx context.Context) error { return s.keys.Disable(ctx) }

// NewRootKey adds a root-key generation that new objects are sealed under, wrapped under
// the key in use (after a suspected exposure of a root key, or by policy); it returns the
// new generation. Older generations stay, wrapped, so everything stored stays readable.
func (s *Service) NewRootKey(ctx context.Context) (uint32, error) {
	return s.keys.NewGeneration(ctx)
}

// CheckRotation runs the automatic rotation check now; it reports whether it rotated.
func (s *Service) CheckRotation(ctx context.Context) (bool, error) {
	return s.keys.CheckRotation(ctx)
}
