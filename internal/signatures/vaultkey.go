package signatures

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

// KeyVault is what a cosign anchor held in a vault reads: this process's vaults
// (*vault.Service), called in-process as a marked service caller (vault.AsService).
type KeyVault interface {
	LocalVault(ctx context.Context, vaultURL string) (name string, ok bool, err error)
	GetKey(ctx context.Context, caller identity.Principal, vault, name, version string) (vault.Key, error)
	ListKeyVersions(ctx context.Context, caller identity.Principal, vault, name string, maxResults int, skip string) (vault.Page[vault.Key], error)
}

const (
	// maxKeyVersions bounds the versions a versionless vault anchor trusts (the newest).
	maxKeyVersions = 16
	// vaultCaller is the service name the vault's audit trail shows (coffer/signatures).
	vaultCaller = "signatures"
)

// KeyURL is a parsed vault key URL.
type KeyURL struct {
	Vault   string // scheme://host[:port]
	Name    string
	Version string // "": every enabled version (follows rotation)
}

// ParseKeyURL parses https://VAULT-HOST/keys/NAME[/VERSION].
func ParseKeyURL(s string) (KeyURL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return KeyURL{}, invalid("keyUrl %q: give https://VAULT-HOST/keys/NAME or https://VAULT-HOST/keys/NAME/VERSION", s)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "keys" || !anchorName.MatchString(parts[1]) || (len(parts) == 3 && !anchorName.MatchString(parts[2])) {
		return KeyURL{}, invalid("keyUrl %q: the path is /keys/NAME or /keys/NAME/VERSION", s)
	}
	k := KeyURL{Vault: u.Scheme + "://" + u.Host, Name: parts[1]}
	if len(parts) == 3 {
		k.Version = parts[2]
	}
	return k, nil
}

// keyUnavailable is a vault's definitive answer that a key cannot be trusted now (as
// opposed to a failure to ask): the anchor then trusts nothing until the key is back.
type keyUnavailable struct{ msg string }

func (e *keyUnavailable) Error() string { return e.msg }

// fetchVaultKey reads the public keys keyURL names, as the registry's system identity, and
// returns them as the anchor's material (PEM, one block per version). An error of type
// *keyUnavailable says the key is disabled, expired, deleted, of the wrong type or out of
// the identity's reach; any other error is a failure to read.
func (s *Service) fetchVaultKey(ctx context.Context, keyURL string) (string, error) {
	ku, err := ParseKeyURL(keyURL)
	if err != nil {
		return "", err
	}
	if s.opts.Vault == nil {
		return "", invalid("keyUrl: this server has no vault service to read %s from", keyURL)
	}
	name, ok, err := s.opts.Vault.LocalVault(ctx, ku.Vault)
	if err != nil {
		return "", fmt.Errorf("find the vault of %s: %w", keyURL, err)
	}
	if !ok {
		return "", invalid("keyUrl %s: %s is not a vault of this Coffer server (give the vault URI that 'coffer vault show' prints)", keyURL, ku.Vault)
	}
	ctx = vault.AsService(ctx, vaultCaller)
	who := s.opts.VaultIdentity
	var versions []vault.Key
	if ku.Version != "" {
		k, err := s.opts.Vault.GetKey(ctx, who, name, ku.Name, ku.Version)
		if err != nil {
			return "", vaultKeyError(keyURL, err)
		}
		versions = []vault.Key{k}
	} else {
		skip := ""
		for range 100 {
			page, err := s.opts.Vault.ListKeyVersions(ctx, who, name, ku.Name, 0, skip)
			if err != nil {
				return "", vaultKeyError(keyURL, err)
			}
			versions = append(versions, page.Items...)
			if skip = page.Next; skip == "" {
				break
			}
		}
	}
	now := s.opts.Now()
	var out strings.Builder
	n := 0
	// Newest first (the list is oldest first), at most maxKeyVersions.
	for i := len(versions) - 1; i >= 0 && n < maxKeyVersions; i-- {
		k := versions[i]
		if !usable(k.Attributes, now) {
			continue
		}
		if ku.Version == "" {
			// The list may carry no key material: read the version itself.
			if k, err = s.opts.Vault.GetKey(ctx, who, name, ku.Name, k.Version); err != nil {
				return "", vaultKeyError(keyURL, err)
			}
		}
		m, err := keys.Parse(k.JWK.Public())
		if err != nil {
			return "", &keyUnavailable{fmt.Sprintf("key %s version %s: %v", keyURL, k.Version, err)}
		}
		var pub any
		switch {
		case m.ECPub != nil:
			pub = m.ECPub
		case m.RSAPub != nil:
			pub = m.RSAPub
		default:
			return "", &keyUnavailable{fmt.Sprintf("key %s is of type %s: cosign signs with EC or RSA keys", keyURL, k.JWK.Kty)}
		}
		_, der, err := cosignKey(pub, k.Version)
		if err != nil {
			return "", &keyUnavailable{fmt.Sprintf("key %s version %s: %v", keyURL, k.Version, err)}
		}
		pem.Encode(&out, &pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{pemKeyVersion: k.Version}, Bytes: der})
		n++
	}
	if n == 0 {
		return "", &keyUnavailable{fmt.Sprintf("key %s has no enabled version that is valid now", keyURL)}
	}
	return out.String(), nil
}

// usable reports whether a key version is enabled and within its validity now.
func usable(a vault.Attributes, now time.Time) bool {
	return a.Enabled && (a.NotBefore == nil || !now.Before(*a.NotBefore)) && (a.Expires == nil || now.Before(*a.Expires))
}

// vaultKeyError classifies the vault's answer: a missing, disabled or forbidden key is
// unavailable (the anchor trusts nothing); anything else is a failure to read.
func vaultKeyError(keyURL string, err error) error {
	switch {
	case errors.Is(err, vault.ErrNotFound):
		return &keyUnavailable{fmt.Sprintf("key %s is not in its vault (deleted?): %v", keyURL, err)}
	case errors.Is(err, vault.ErrForbidden), errors.Is(err, vault.ErrNetworkDenied):
		return &keyUnavailable{fmt.Sprintf("the registry's system identity may not read key %s: give it the get and list key permissions on the vault (%v)", keyURL, err)}
	case errors.Is(err, vault.ErrDisabled), errors.Is(err, vault.ErrExpired), errors.Is(err, vault.ErrNotYetValid):
		return &keyUnavailable{fmt.Sprintf("key %s: %v", keyURL, err)}
	}
	return fmt.Errorf("read key %s: %w", keyURL, err)
}

// RefreshResult is what a refresh did to one vault anchor.
type RefreshResult struct {
	Name    string `json:"name"`
	Changed bool   `json:"changed"`
	// Versions are the key versions the anchor trusts after the refresh.
	Versions []string `json:"versions"`
	// Status is why the anchor trusts nothing ("" when the key was read).
	Status string `json:"status,omitempty"`
}

// RefreshKeys re-reads the vault keys of the cosign anchors held in a vault (name: that
// one only; "": all). An anchor whose versions changed (a rotation, a version disabled or
// deleted, the key deleted or out of reach) is stored with its new keys, which bumps the
// policy version, so every cached verification is recomputed. A failure to ask the vault
// (as opposed to its answer) leaves the anchor as it was.
func (s *Service) RefreshKeys(ctx context.Context, name string) ([]RefreshResult, error) {
	c, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	var out []RefreshResult
	found, changed := false, false
	for _, a := range c.anchors {
		if a.KeyURL == "" || (name != "" && a.Name != name) {
			continue
		}
		found = true
		material, err := s.fetchVaultKey(ctx, a.KeyURL)
		status := ""
		var ku *keyUnavailable
		switch {
		case errors.As(err, &ku):
			material, status = "", ku.msg
		case err != nil:
			if name != "" {
				return nil, err
			}
			s.log.WarnContext(ctx, "signature anchor's vault key not refreshed", "anchor", a.Name, "err", err)
			continue
		}
		r := RefreshResult{Name: a.Name, Status: status}
		if material != a.Material || status != a.KeyStatus {
			if _, err := s.opts.Store.UpdateAnchorKey(ctx, a.Name, material, status, s.opts.Now().UTC()); err != nil {
				return nil, err
			}
			r.Changed, changed = true, true
			if status != "" {
				s.log.WarnContext(ctx, "signature anchor's vault key is unavailable: it trusts nothing", "anchor", a.Name, "status", status)
			}
		}
		if na, err := ParseAnchor(AnchorSpec{Name: a.Name, Kind: AnchorCosign, KeyURL: a.KeyURL, PublicKey: material}); err == nil {
			for _, k := range na.Keys {
				r.Versions = append(r.Versions, k.Version)
			}
		}
		if r.Versions == nil {
			r.Versions = []string{}
		}
		out = append(out, r)
	}
	if name != "" && !found {
		return nil, fmt.Errorf("no signature anchor named %q holds a vault key: %w", name, ErrNotFound)
	}
	if changed {
		if _, err := s.reload(ctx); err != nil {
			return out, err
		}
	}
	return out, nil
}

// Run refreshes the vault anchors every Options.KeyRefreshInterval until ctx ends (a
// background job of the server).
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.KeyRefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.RefreshKeys(ctx, ""); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "refresh of the signature anchors' vault keys failed", "err", err)
			}
		}
	}
}
