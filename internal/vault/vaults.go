package vault

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/identity"
)

func validateVaultProps(v *Vault) error {
	if v.SoftDeleteRetentionDays == 0 {
		v.SoftDeleteRetentionDays = 90
	}
	if v.SoftDeleteRetentionDays < 7 || v.SoftDeleteRetentionDays > 90 {
		return fmt.Errorf("%w: soft-delete retention must be 7 to 90 days, not %d", ErrInvalid, v.SoftDeleteRetentionDays)
	}
	if v.Port < 0 || v.Port > 65535 {
		return fmt.Errorf("%w: port %d is out of range", ErrInvalid, v.Port)
	}
	return v.NetworkRules.normalize()
}

// minVaultPort is the lowest port a vault may have of its own: ports below it are
// privileged, which the server cannot open unless it runs as root, and it should not.
const minVaultPort = 1024

// checkPort checks a port given to vault name (create, or an update that changes it): not
// privileged, not the main listener's, not another vault's, and one the server can open
// (the port checkers, see CheckPortsWith). A vault whose port cannot be served would claim
// a vaultUri nobody can reach.
func (s *Service) checkPort(ctx context.Context, q queryer, name string, port int) error {
	switch {
	case port < minVaultPort:
		return fmt.Errorf("%w: port %d is privileged (below %d): give the vault a port from %d to 65535", ErrInvalid, port, minVaultPort, minVaultPort)
	case s.addrs.Port != 0 && port == s.addrs.Port:
		return fmt.Errorf("%w: port %d is the server's main port, where vaults answer by host name (NAME.%s): give the vault another port, or none", ErrInvalid, port, s.addrs.Domain)
	}
	if err := portTaken(ctx, q, name, port); err != nil {
		return err
	}
	s.mu.Lock()
	checkers := append([]func(context.Context, string, int) error{}, s.portCheckers...)
	s.mu.Unlock()
	for _, check := range checkers {
		if err := check(ctx, name, port); err != nil {
			return fmt.Errorf("%w: port %d cannot be served: %v", ErrInvalid, port, err)
		}
	}
	return nil
}

// CheckPortsWith adds a check of the ports given to vaults, run before a vault is created
// with a port or moved to another one; an error refuses the change (the vault API checks
// that it can open the port).
func (s *Service) CheckPortsWith(fn func(ctx context.Context, vault string, port int) error) {
	s.mu.Lock()
	s.portCheckers = append(s.portCheckers, fn)
	s.mu.Unlock()
}

// CreateVault creates a vault. Zero properties take the defaults (access policies,
// 90-day retention, no purge protection, network open).
func (s *Service) CreateVault(ctx context.Context, caller identity.Principal, v Vault) (_ Vault, err error) {
	e := auditEntry{op: "VaultCreate", target: v.Name, res: resource(v.Name, ""), start: s.now(), sync: true}
	defer func() { s.record(ctx, caller, e, err) }()
	v.Name = foldVault(v.Name)
	e.target, e.res = v.Name, resource(v.Name, "")
	if err := ValidVaultName(v.Name); err != nil {
		return Vault{}, err
	}
	if err := s.authorize(ctx, caller, v, access.VaultManage, access.VaultScope(v.Name), false); err != nil {
		return Vault{}, err
	}
	if err := validateVaultProps(&v); err != nil {
		return Vault{}, err
	}
	if v.HSM && s.hsm == nil {
		return Vault{}, fmt.Errorf("%w: vault %q asks for an HSM, but this server has none: start coffer serve with --hsm-module, --hsm-token and --hsm-pin-file (docs/hsm.md)", ErrInvalid, v.Name)
	}
	v.Created = s.now().UTC().Truncate(1e9)
	v.Updated = v.Created
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := getVaultRow(ctx, tx, v.Name); err == nil {
			return fmt.Errorf("%w: vault %q already exists", ErrConflict, v.Name)
		}
		if v.Port != 0 {
			if err := s.checkPort(ctx, tx, v.Name, v.Port); err != nil {
				return err
			}
		}
		return putVaultRow(ctx, tx, v, true)
	})
	if err != nil {
		return Vault{}, err
	}
	s.forgetVault(v.Name)
	v.URL = s.vaultURL(v)
	s.changed(v, false)
	return v, nil
}

func portTaken(ctx context.Context, q queryer, name string, port int) error {
	all, err := listVaultRows(ctx, q)
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.Name != name && o.Port == port {
			return fmt.Errorf("%w: port %d is already used by vault %q", ErrConflict, port, o.Name)
		}
	}
	return nil
}

// GetVault returns a vault's properties.
func (s *Service) GetVault(ctx context.Context, caller identity.Principal, name string) (Vault, error) {
	name = foldVault(name)
	v, err := s.vault(ctx, name)
	if err != nil {
		return Vault{}, err
	}
	if err := s.authorize(ctx, caller, v, access.VaultRead, access.VaultScope(name), false); err != nil {
		return Vault{}, err
	}
	return v, nil
}

// ListVaults returns the vaults the caller may read.
func (s *Service) ListVaults(ctx context.Context, caller identity.Principal) ([]Vault, error) {
	all, err := listVaultRows(ctx, s.db)
	if err != nil {
		return nil, err
	}
	out := []Vault{}
	for _, v := range all {
		v.URL = s.vaultURL(v)
		if s.authorize(ctx, caller, v, access.VaultRead, access.VaultScope(v.Name), false) == nil {
			out = append(out, v)
		}
	}
	return out, nil
}

// AllVaults lists every vault without authorization, for the server's own wiring
// (per-vault ports, host routing).
func (s *Service) AllVaults(ctx context.Context) ([]Vault, error) {
	all, err := listVaultRows(ctx, s.db)
	for i := range all {
		all[i].URL = s.vaultURL(all[i])
	}
	return all, err
}

// LookupVault returns a vault without authorization (for routing).
func (s *Service) LookupVault(ctx context.Context, name string) (Vault, error) {
	return s.vault(ctx, name)
}

// UpdateVault changes vault properties. Purge protection cannot be turned off.
func (s *Service) UpdateVault(ctx context.Context, caller identity.Principal, name string, u VaultUpdate) (_ Vault, err error) {
	name = foldVault(name)
	e := auditEntry{op: "VaultUpdate", target: name, res: resource(name, ""), start: s.now(), sync: true}
	defer func() { s.record(ctx, caller, e, err) }()
	cur, err := s.vault(ctx, name)
	if err != nil {
		return Vault{}, err
	}
	if err := s.authorize(ctx, caller, cur, access.VaultManage, access.VaultScope(name), false); err != nil {
		return Vault{}, err
	}
	var out Vault
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		v, err := getVaultRow(ctx, tx, name)
		if err != nil {
			return err
		}
		if u.EnableRbacAuthorization != nil {
			v.EnableRbacAuthorization = *u.EnableRbacAuthorization
		}
		if u.SoftDeleteRetentionDays != nil {
			if v.EnablePurgeProtection && *u.SoftDeleteRetentionDays != v.SoftDeleteRetentionDays {
				return fmt.Errorf("%w: vault %q has purge protection: its soft-delete retention (%d days) cannot be changed any more, as in Azure Key Vault (deleted keys must stay recoverable for the period promised)",
					ErrConflict, name, v.SoftDeleteRetentionDays)
			}
			v.SoftDeleteRetentionDays = *u.SoftDeleteRetentionDays
			if v.SoftDeleteRetentionDays == 0 {
				return fmt.Errorf("%w: soft-delete retention must be 7 to 90 days", ErrInvalid)
			}
		}
		if u.EnablePurgeProtection != nil {
			if v.EnablePurgeProtection && !*u.EnablePurgeProtection {
				return fmt.Errorf("%w: purge protection cannot be turned off once it is on", ErrConflict)
			}
			v.EnablePurgeProtection = *u.EnablePurgeProtection
		}
		if u.NetworkRules != nil {
			v.NetworkRules = *u.NetworkRules
		}
		if u.Port != nil && *u.Port != v.Port {
			v.Port = *u.Port
			if v.Port > 0 && v.Port <= 65535 {
				if err := s.checkPort(ctx, tx, name, v.Port); err != nil {
					return err
				}
			}
		}
		if err := validateVaultProps(&v); err != nil {
			return err
		}
		v.Updated = s.now().UTC()
		out = v
		return putVaultRow(ctx, tx, v, false)
	})
	if err != nil {
		return Vault{}, err
	}
	s.forgetVault(name)
	out.URL = s.vaultURL(out)
	s.changed(out, false)
	return out, nil
}

// DeleteVault deletes an empty vault. A vault that still holds keys, deleted ones
// included, is refused: delete and purge them first.
func (s *Service) DeleteVault(ctx context.Context, caller identity.Principal, name string) (err error) {
	name = foldVault(name)
	e := auditEntry{op: "VaultDelete", target: name, res: resource(name, ""), start: s.now(), sync: true}
	defer func() { s.record(ctx, caller, e, err) }()
	cur, err := s.vault(ctx, name)
	if err != nil {
		return err
	}
	if err := s.authorize(ctx, caller, cur, access.VaultManage, access.VaultScope(name), false); err != nil {
		return err
	}
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM vault_keys WHERE vault = ?`, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: vault %q still holds %d keys (deleted keys included): delete and purge them first", ErrConflict, name, n)
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM vault_vaults WHERE name = ?`, name)
		return err
	})
	if err != nil {
		return err
	}
	s.forgetVault(name)
	s.deletePolicies(ctx, name)
	s.changed(cur, true)
	return nil
}

// deletePolicies removes a deleted vault's access policies, so that a vault created again
// under the same name starts with none. The vault is gone already: a failure is logged,
// not returned.
func (s *Service) deletePolicies(ctx context.Context, name string) {
	if s.policies == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.policies.DeleteVaultPolicies(ctx, name); err != nil {
		s.log.Warn("access policies of a deleted vault not removed", "vault", name, "err", err)
	}
}

// VaultExists answers nil when vault name exists, and an error wrapping access.ErrNotFound
// when it does not (the access part refuses access policies on a missing vault with it).
func (s *Service) VaultExists(ctx context.Context, name string) error {
	_, err := s.vault(ctx, strings.ToLower(name))
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("vault %q does not exist: %w", name, access.ErrNotFound)
	}
	return err
}
