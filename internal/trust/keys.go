package trust

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/theupdateframework/notary/trustmanager"
	"github.com/theupdateframework/notary/tuf/data"
	"github.com/theupdateframework/notary/tuf/signed"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vault"
)

// Vault is what the trust part needs of the key vault: ECDSA P-256 keys that sign in the
// vault. Every call is made as the registry's identity, marked vault.AsService.
type Vault interface {
	LookupVault(ctx context.Context, name string) (vault.Vault, error)
	CreateVault(ctx context.Context, caller identity.Principal, v vault.Vault) (vault.Vault, error)
	CreateKey(ctx context.Context, caller identity.Principal, vault, name string, p vault.CreateKeyParams) (vault.Key, error)
	Sign(ctx context.Context, caller identity.Principal, vault, name, version, alg string, digest []byte) (string, []byte, error)
	DeleteKey(ctx context.Context, caller identity.Principal, vault, name string) (vault.DeletedKey, error)
	PurgeDeletedKey(ctx context.Context, caller identity.Principal, vault, name string) error
}

// GrantFunc gives a principal key permissions in a vault (the access part's SetPolicy).
type GrantFunc func(ctx context.Context, vault, objectID string, keyPermissions []string) error

// serviceName is how the trust part names itself to the vault (audit: "coffer/trust").
const serviceName = "trust"

// vaultCtx marks ctx as the trust service calling the vault in-process.
func vaultCtx(ctx context.Context) context.Context { return vault.AsService(ctx, serviceName) }

// newVaultKey creates a P-256 key in the trust vault for role of gun and records it.
func (s *Service) newVaultKey(ctx context.Context, gun, repo string, role data.RoleName) (KeyRow, data.PublicKey, error) {
	if err := s.ensureVault(ctx); err != nil {
		return KeyRow{}, nil, err
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	sum := sha256.Sum256([]byte(gun))
	name := fmt.Sprintf("trust-%s-%s-%s", hex.EncodeToString(sum[:8]), role, hex.EncodeToString(rnd[:]))
	k, err := s.vault.CreateKey(vaultCtx(ctx), s.ident, s.vaultName, name, vault.CreateKeyParams{
		Kty: "EC", Curve: "P-256", KeyOps: []string{"sign", "verify"},
		Tags: map[string]string{"purpose": "coffer content trust " + role.String() + " key", "gun": clip(gun)},
	})
	if err != nil {
		return KeyRow{}, nil, fmt.Errorf("create the %s key of %s in vault %s: %w", role, gun, s.vaultName, err)
	}
	pub, err := tufPublicKey(k)
	if err != nil {
		return KeyRow{}, nil, err
	}
	raw, err := json.Marshal(pub)
	if err != nil {
		return KeyRow{}, nil, err
	}
	row := KeyRow{GUN: gun, Repo: repo, Role: role.String(), KeyID: pub.ID(), VaultKey: name, Public: string(raw), Created: s.now().Unix()}
	if err := s.store.AddKey(ctx, row); err != nil {
		return KeyRow{}, nil, err
	}
	s.log.InfoContext(ctx, "content trust key created in the vault", "gun", gun, "role", role, "key_id", pub.ID(), "vault", s.vaultName, "key", name)
	return row, pub, nil
}

// tufPublicKey is the TUF ECDSA public key of a vault EC key.
func tufPublicKey(k vault.Key) (data.PublicKey, error) {
	if k.JWK.Crv != "P-256" || len(k.JWK.X) == 0 || len(k.JWK.Y) == 0 {
		return nil, fmt.Errorf("vault key %s is not an EC P-256 key", k.Name)
	}
	pk := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(k.JWK.X), Y: new(big.Int).SetBytes(k.JWK.Y)}
	der, err := x509.MarshalPKIXPublicKey(pk)
	if err != nil {
		return nil, fmt.Errorf("vault key %s: %w", k.Name, err)
	}
	return data.NewECDSAPublicKey(der), nil
}

// ensureVault creates the trust vault on first use and lets the registry's identity use
// its keys. It has no purge protection: disabling content trust purges its keys.
func (s *Service) ensureVault(ctx context.Context) error {
	s.vaultOnce.Lock()
	defer s.vaultOnce.Unlock()
	if s.vaultReady {
		return nil
	}
	if _, err := s.vault.LookupVault(ctx, s.vaultName); errors.Is(err, vault.ErrNotFound) {
		if _, err := s.vault.CreateVault(vault.AsServer(ctx), identity.Principal{}, vault.Vault{Name: s.vaultName, SoftDeleteRetentionDays: 7}); err != nil && !errors.Is(err, vault.ErrConflict) {
			return fmt.Errorf("create the content trust vault %s: %w", s.vaultName, err)
		}
	} else if err != nil {
		return err
	}
	if err := s.grant(ctx, s.vaultName, s.ident.ID, []string{"get", "list", "create", "sign", "verify", "delete", "purge"}); err != nil {
		return fmt.Errorf("let the registry's identity use the content trust vault %s: %w", s.vaultName, err)
	}
	s.vaultReady = true
	return nil
}

// deleteVaultKeys deletes and purges server-held keys; errors are logged, not returned,
// once the rows are gone (a key left in the vault signs nothing the server serves).
func (s *Service) deleteVaultKeys(ctx context.Context, keys []KeyRow) {
	for _, k := range keys {
		if _, err := s.vault.DeleteKey(vaultCtx(ctx), s.ident, s.vaultName, k.VaultKey); err != nil && !errors.Is(err, vault.ErrNotFound) {
			s.log.WarnContext(ctx, "delete a content trust key from the vault", "key", k.VaultKey, "err", err)
			continue
		}
		if err := s.vault.PurgeDeletedKey(vaultCtx(ctx), s.ident, s.vaultName, k.VaultKey); err != nil && !errors.Is(err, vault.ErrNotFound) {
			s.log.WarnContext(ctx, "purge a content trust key from the vault", "key", k.VaultKey, "err", err)
		}
	}
}

// keyService is the signed.CryptoService the TUF builder signs through: the server-held
// keys of one GUN, each signature a vault sign call.
type keyService struct {
	ctx context.Context
	s   *Service
	gun string
}

var _ signed.CryptoService = keyService{}

func (k keyService) row(keyID string) (KeyRow, data.PublicKey, error) {
	row, err := k.s.store.Key(k.ctx, k.gun, keyID)
	if errors.Is(err, store.ErrNotFound) {
		return row, nil, trustmanager.ErrKeyNotFound{KeyID: keyID}
	}
	if err != nil {
		return row, nil, err
	}
	pub, err := data.UnmarshalPublicKey([]byte(row.Public))
	return row, pub, err
}

func (k keyService) GetPrivateKey(keyID string) (data.PrivateKey, data.RoleName, error) {
	row, pub, err := k.row(keyID)
	if err != nil {
		return nil, "", err
	}
	return &vaultPrivateKey{PublicKey: pub, s: k.s, ctx: k.ctx, name: row.VaultKey}, data.RoleName(row.Role), nil
}

func (k keyService) GetKey(keyID string) data.PublicKey {
	_, pub, err := k.row(keyID)
	if err != nil {
		return nil
	}
	return pub
}

func (k keyService) Create(data.RoleName, data.GUN, string) (data.PublicKey, error) {
	return nil, errors.New("server keys are created through the key endpoints")
}
func (k keyService) AddKey(data.RoleName, data.GUN, data.PrivateKey) error {
	return errors.New("the server never imports private keys")
}
func (k keyService) RemoveKey(string) error {
	return errors.New("server keys go with their collection")
}
func (k keyService) ListKeys(data.RoleName) []string       { return nil }
func (k keyService) ListAllKeys() map[string]data.RoleName { return nil }

// vaultPrivateKey signs in the vault: ES256 over the SHA-256 of the message, which is what
// notary's ECDSA keys sign (r||s, 32 bytes each, as Key Vault answers).
type vaultPrivateKey struct {
	data.PublicKey
	s    *Service
	ctx  context.Context
	name string
}

func (v *vaultPrivateKey) Sign(_ io.Reader, msg []byte, _ crypto.SignerOpts) ([]byte, error) {
	d := sha256.Sum256(msg)
	_, sig, err := v.s.vault.Sign(vaultCtx(v.ctx), v.s.ident, v.s.vaultName, v.name, "", "ES256", d[:])
	if err != nil {
		return nil, fmt.Errorf("sign with the vault key %s: %w", v.name, err)
	}
	return sig, nil
}

func (v *vaultPrivateKey) Private() []byte                       { return nil }
func (v *vaultPrivateKey) CryptoSigner() crypto.Signer           { return nil }
func (v *vaultPrivateKey) SignatureAlgorithm() data.SigAlgorithm { return data.ECDSASignature }
