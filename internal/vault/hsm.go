package vault

import (
	"context"
	"fmt"
	"strings"

	"github.com/cofferhq/coffer/internal/vault/keys"
)

// HSM holds the key material of -HSM keys of HSM-backed vaults (package vault/hsm: a
// PKCS#11 token). The vault keeps only the object's reference, sealed like any material.
type HSM interface {
	// Generate makes a key inside the token and returns its public part (for oct, only
	// kty) and the token object's reference.
	Generate(ctx context.Context, label string, spec keys.CreateSpec) (pub keys.JWK, ref string, err error)
	// OpenKey returns the operations of object ref, whose public part is pub.
	OpenKey(ctx context.Context, ref string, pub keys.JWK) (keys.Operator, error)
	// Destroy destroys object ref (purge).
	Destroy(ctx context.Context, ref string) error
	// Platform describes the token (the key JSON's hsmPlatform).
	Platform() string
}

// inHSM says whether a new version of type kty in vault v lives in the token.
func (s *Service) inHSM(v Vault, kty string) bool {
	return s.hsm != nil && (v.HSM || s.hsmAll) && strings.HasSuffix(kty, "-HSM")
}

// generate makes the material of a new version of type spec.Kty in vault v: in the token
// (ref is the object's reference, full its public part) or in software.
func (s *Service) generate(ctx context.Context, v Vault, name string, spec keys.CreateSpec) (full keys.JWK, ref string, err error) {
	if !s.inHSM(v, spec.Kty) {
		full, err = keys.Generate(spec)
		return full, "", err
	}
	full, ref, err = s.hsm.Generate(ctx, "coffer:"+v.Name+"/"+name, spec)
	if err != nil {
		return keys.JWK{}, "", fmt.Errorf("create %s key %q in the vault's HSM: %w", spec.Kty, name, err)
	}
	return full, ref, nil
}

// hsmOperator opens the token object of version r, whose sealed record names it.
func (s *Service) hsmOperator(ctx context.Context, r versionRow, j keys.JWK) (keys.Operator, error) {
	if string(j.KeyHSM) != r.HSM {
		return nil, fmt.Errorf("key %s/%s: the sealed record names another HSM object than the key's row (damaged or tampered metadata)", r.Name, r.Version)
	}
	if s.hsm == nil {
		return nil, fmt.Errorf("key %s/%s lives in an HSM, but this server has no HSM: start coffer serve with --hsm-module, --hsm-token and --hsm-pin-file", r.Name, r.Version)
	}
	j.KeyHSM = nil
	op, err := s.hsm.OpenKey(ctx, r.HSM, j)
	if err != nil {
		return nil, fmt.Errorf("key %s/%s: %w", r.Name, r.Version, err)
	}
	return op, nil
}

// destroyHSMObjects destroys the token objects of purged versions. The key is gone from
// the store already: a failure is logged (the object is orphaned, never reachable again).
func (s *Service) destroyHSMObjects(ctx context.Context, versions []versionRow) {
	for _, r := range versions {
		if r.HSM == "" || s.hsm == nil {
			continue
		}
		if err := s.hsm.Destroy(ctx, r.HSM); err != nil {
			s.log.Warn("HSM object of a purged key not destroyed", "vault", r.Vault, "key", r.Name, "version", r.Version, "err", err)
		}
	}
}
