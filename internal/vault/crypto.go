package vault

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

// resolveForOp authorizes op and returns the version to use: the named one, or for
// version "" the newest enabled one. It checks key_ops and the version's dates.
func (s *Service) resolveForOp(ctx context.Context, caller identity.Principal, vault, name, version, op, alg string) (Vault, versionRow, error) {
	v, err := s.enter(ctx, caller, vault, opAction[op], keyScope(vault, name), true)
	if err != nil {
		return v, versionRow{}, err
	}
	c, err := s.liveVersionKey(ctx, vault, name, version)
	if err != nil {
		return v, versionRow{}, err
	}
	r, err := pick(c, version, true)
	if err != nil {
		return v, r, err
	}
	if err := s.checkUsable(r, op); err != nil {
		return v, r, err
	}
	if err := keys.CheckAlg(r.Kty, op, alg); err != nil {
		return v, r, classify(err)
	}
	if !slices.Contains(r.KeyOps, op) {
		return v, r, fmt.Errorf("%w: operation %s is not in the key's key_ops (%v)", ErrOperationNotAllowed, op, r.KeyOps)
	}
	return v, r, nil
}

// classify turns a keys error into the service's typed errors.
func classify(err error) error {
	if errors.Is(err, keys.ErrUnsupported) {
		return fmt.Errorf("%w: %w", ErrOperationNotAllowed, err)
	}
	return err
}

// Crypt runs encrypt, decrypt, wrapKey or unwrapKey (op) with the named version, or the
// newest enabled one when version is "". It returns the kid of the version used.
func (s *Service) Crypt(ctx context.Context, caller identity.Principal, vault, name, version, op string, p keys.CipherParams) (kid string, res keys.CipherResult, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "Key" + upperFirst(op), target: vault + "/keys/" + name + "/" + version, res: resource(vault, name), alg: p.Alg, start: s.now()}
	defer func() { s.record(ctx, caller, e, err) }()
	if op != OpWrap && op != OpUnwrap && op != OpEncrypt && op != OpDecrypt {
		return "", res, fmt.Errorf("%w: unknown operation %q", ErrInvalid, op)
	}
	if p.Alg == "" {
		return "", res, fmt.Errorf("%w: alg is required", ErrInvalid)
	}
	v, r, err := s.resolveForOp(ctx, caller, vault, name, version, op, p.Alg)
	if r.Name != "" {
		e.res = resource(vault, r.Name) // the key\'s stored name, whatever the spelling asked
	}
	if r.Version != "" {
		kid = KeyID(s.baseURL(ctx, v), r.Name, r.Version)
		e.target = kid
	}
	if err != nil {
		return kid, res, err
	}
	m, err := s.material(ctx, r)
	if err != nil {
		return kid, res, err
	}
	wrap := op == OpWrap || op == OpUnwrap
	if op == OpWrap || op == OpEncrypt {
		res, err = m.Encrypt(p, wrap)
	} else {
		res, err = m.Decrypt(p, wrap)
	}
	return kid, res, classify(err)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	b := []byte(s)
	if b[0] >= 'a' && b[0] <= 'z' {
		b[0] -= 'a' - 'A'
	}
	return string(b)
}

// WrapKey wraps plaintext key bytes with the key (version "" = newest enabled version)
// and returns the kid of the version used with the wrapped bytes.
func (s *Service) WrapKey(ctx context.Context, caller identity.Principal, vault, name, version, alg string, plaintext []byte) (string, []byte, error) {
	vault = foldVault(vault)
	kid, res, err := s.Crypt(ctx, caller, vault, name, version, OpWrap, keys.CipherParams{Alg: alg, Value: plaintext})
	return kid, res.Value, err
}

// UnwrapKey unwraps with the key version named (or the newest enabled one).
func (s *Service) UnwrapKey(ctx context.Context, caller identity.Principal, vault, name, version, alg string, wrapped []byte) (string, []byte, error) {
	vault = foldVault(vault)
	kid, res, err := s.Crypt(ctx, caller, vault, name, version, OpUnwrap, keys.CipherParams{Alg: alg, Value: wrapped})
	return kid, res.Value, err
}

// Sign signs a digest.
func (s *Service) Sign(ctx context.Context, caller identity.Principal, vault, name, version, alg string, digest []byte) (kid string, sig []byte, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeySign", target: vault + "/keys/" + name + "/" + version, res: resource(vault, name), alg: alg, start: s.now()}
	defer func() { s.record(ctx, caller, e, err) }()
	v, r, err := s.resolveForOp(ctx, caller, vault, name, version, OpSign, alg)
	if r.Name != "" {
		e.res = resource(vault, r.Name) // the key\'s stored name, whatever the spelling asked
	}
	if r.Version != "" {
		kid = KeyID(s.baseURL(ctx, v), r.Name, r.Version)
		e.target = kid
	}
	if err != nil {
		return kid, nil, err
	}
	m, err := s.material(ctx, r)
	if err != nil {
		return kid, nil, err
	}
	sig, err = m.Sign(alg, digest)
	return kid, sig, classify(err)
}

// Verify checks a signature over a digest.
func (s *Service) Verify(ctx context.Context, caller identity.Principal, vault, name, version, alg string, digest, sig []byte) (kid string, ok bool, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyVerify", target: vault + "/keys/" + name + "/" + version, res: resource(vault, name), alg: alg, start: s.now()}
	defer func() { s.record(ctx, caller, e, err) }()
	v, r, err := s.resolveForOp(ctx, caller, vault, name, version, OpVerify, alg)
	if r.Name != "" {
		e.res = resource(vault, r.Name) // the key\'s stored name, whatever the spelling asked
	}
	if r.Version != "" {
		kid = KeyID(s.baseURL(ctx, v), r.Name, r.Version)
		e.target = kid
	}
	if err != nil {
		return kid, false, err
	}
	m, err := s.material(ctx, r)
	if err != nil {
		return kid, false, err
	}
	ok, err = m.Verify(alg, digest, sig)
	return kid, ok, classify(err)
}

// RandomBytes returns count (1-128) random bytes. Only network rules apply.
func (s *Service) RandomBytes(ctx context.Context, caller identity.Principal, vault string, count int) (_ []byte, err error) {
	vault = foldVault(vault)
	v, err := s.vault(ctx, vault)
	if err != nil {
		return nil, err
	}
	if err := s.checkNetwork(ctx, v); err != nil {
		return nil, err
	}
	if count < 1 || count > 128 {
		return nil, fmt.Errorf("%w: count must be 1 to 128", ErrInvalid)
	}
	b := make([]byte, count)
	randRead(b)
	return b, nil
}
