// Package inproc is the KEK driver for Coffer's own vault in the same process. It calls the
// vault service directly as a given identity (the registry's system identity or a managed
// identity), so the vault's access policies or role assignments, its network rules (unless
// they let Coffer's services bypass them), key state and audit trail apply exactly as they
// do over HTTP; only the network hop and the token are skipped. Every call is marked as the
// Coffer service "kek" (vault.AsService), which is what a vault's CofferServices bypass lets
// through.
package inproc

import (
	"context"
	"errors"
	"fmt"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

// VaultNamer maps a vault URL (scheme://host[:port], as in key ids) to the name of the
// local vault it addresses; ok is false when the URL is not one of this server's vaults.
type VaultNamer func(ctx context.Context, vaultURL string) (name string, ok bool, err error)

// Driver calls svc as caller.
type Driver struct {
	svc    *vault.Service
	caller identity.Principal
	name   VaultNamer
}

// New returns a driver acting as caller.
func New(svc *vault.Service, caller identity.Principal, name VaultNamer) *Driver {
	return &Driver{svc: svc, caller: caller, name: name}
}

var _ kek.KEK = (*Driver)(nil)

// service is the name the driver's calls carry in the vault (the audit trail's userAgent
// reads coffer/kek).
const service = "kek"

func (d *Driver) resolve(ctx context.Context, op, keyID string) (string, kek.KeyID, error) {
	id, err := kek.ParseKeyID(keyID)
	if err != nil {
		return "", id, err
	}
	name, ok, err := d.name(ctx, id.Vault)
	if err != nil {
		return "", id, &kek.Error{Op: op, KeyID: keyID, Kind: kek.ErrUnavailable, Detail: err.Error()}
	}
	if !ok {
		return "", id, &kek.Error{Op: op, KeyID: keyID, Kind: kek.ErrNotFound, Detail: "no vault of this server answers at " + id.Vault}
	}
	return name, id, nil
}

// GetKey reads the key as the driver's identity.
func (d *Driver) GetKey(ctx context.Context, keyID string) (kek.KeyInfo, error) {
	ctx = vault.AsService(ctx, service)
	v, id, err := d.resolve(ctx, "get", keyID)
	if err != nil {
		return kek.KeyInfo{}, err
	}
	k, err := d.svc.GetKey(ctx, d.caller, v, id.Name, id.Version)
	if err != nil {
		return kek.KeyInfo{}, mapError("get", keyID, err)
	}
	return kek.KeyInfo{KID: sameForm(id, k.ID), Type: k.JWK.Kty, Enabled: k.Attributes.Enabled, Ops: k.JWK.KeyOps, N: k.JWK.N, E: k.JWK.E}, nil
}

// sameForm writes the vault's kid with the vault URL the caller used (a vault has several:
// by host name, by port), so a stored kid keeps resolving the way its key id did.
func sameForm(asked kek.KeyID, kid string) string {
	got, err := kek.ParseKeyID(kid)
	if err != nil || got.Version == "" {
		return kid
	}
	return kek.KeyID{Vault: asked.Vault, Name: asked.Name, Version: got.Version}.String()
}

// WrapKey wraps with RSA-OAEP-256 (RSA-OAEP, recorded, when the key's HSM cannot).
func (d *Driver) WrapKey(ctx context.Context, keyID string, secret []byte) (string, []byte, error) {
	ctx = vault.AsService(ctx, service)
	v, id, err := d.resolve(ctx, "wrapKey", keyID)
	if err != nil {
		return "", nil, err
	}
	return kek.WrapWithFallback(func(alg string) (string, []byte, error) {
		kid, out, err := d.svc.WrapKey(ctx, d.caller, v, id.Name, id.Version, alg, secret)
		if err != nil {
			return "", nil, mapError("wrapKey", keyID, err)
		}
		return sameForm(id, kid), out, nil
	})
}

// UnwrapKey unwraps with the algorithm the wrapped value records.
func (d *Driver) UnwrapKey(ctx context.Context, kid string, wrapped []byte) ([]byte, error) {
	alg, raw := kek.RecordedAlgorithm(wrapped)
	return d.UnwrapKeyAlgorithm(ctx, kid, alg, raw)
}

// UnwrapKeyAlgorithm unwraps a bare wrapped value (no recorded algorithm) with alg
// (kek.AlgorithmUnwrapper): a JWE's encrypted key names its algorithm in its header.
func (d *Driver) UnwrapKeyAlgorithm(ctx context.Context, kid, alg string, wrapped []byte) ([]byte, error) {
	ctx = vault.AsService(ctx, service)
	v, id, err := d.resolve(ctx, "unwrapKey", kid)
	if err != nil {
		return nil, err
	}
	_, out, err := d.svc.UnwrapKey(ctx, d.caller, v, id.Name, id.Version, alg, wrapped)
	if err != nil {
		return nil, mapError("unwrapKey", kid, err)
	}
	return out, nil
}

func mapError(op, keyID string, err error) error {
	var kind error
	switch {
	case errors.Is(err, keys.ErrTokenLimit):
		kind = kek.ErrAlgorithmUnsupported
	case errors.Is(err, vault.ErrNetworkDenied):
		kind = kek.ErrNetworkDenied
	case errors.Is(err, vault.ErrDisabled), errors.Is(err, vault.ErrExpired), errors.Is(err, vault.ErrNotYetValid):
		kind = kek.ErrDisabled
	case errors.Is(err, vault.ErrForbidden):
		kind = kek.ErrForbidden
	case errors.Is(err, vault.ErrNotFound):
		kind = kek.ErrNotFound
	case errors.Is(err, vault.ErrOperationNotAllowed):
		kind = kek.ErrUnsupportedKeyType
	case errors.Is(err, vault.ErrInvalid), errors.Is(err, keys.ErrDecrypt):
		kind = kek.ErrInvalid
	default:
		kind = kek.ErrUnavailable
	}
	return &kek.Error{Op: op, KeyID: keyID, Kind: kind, Detail: fmt.Sprint(err)}
}
