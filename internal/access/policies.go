package access

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// AccessPolicy is one vault access policy: the key permissions of one principal in one
// vault. It applies when the vault's access model is access policies
// (enableRbacAuthorization=false).
type AccessPolicy struct {
	Vault    string `json:"vault"`
	ObjectID string `json:"objectId"`
	// KeyPermissions in canonical spelling (e.g. "unwrapKey"), in the order of
	// KeyPermissionNames.
	KeyPermissions []string  `json:"keyPermissions"`
	UpdatedAt      time.Time `json:"updatedAt"`
}

// KeyPermissionNames are the access-policy key permissions in canonical spelling ("all"
// is accepted as input and expands to every one of them).
func KeyPermissionNames() []string {
	acts := KeyPermissionActions()
	out := make([]string, len(acts))
	for i, a := range acts {
		out[i] = strings.TrimPrefix(string(a), "vault/keys/")
	}
	return out
}

// keyPermissionAction maps a permission name (any case) to its action.
func keyPermissionAction(name string) (Action, bool) {
	for _, a := range KeyPermissionActions() {
		if strings.EqualFold(strings.TrimPrefix(string(a), "vault/keys/"), name) {
			return a, true
		}
	}
	return "", false
}

// NormalizeKeyPermissions validates permission names case-insensitively, expands "all",
// drops duplicates and returns the canonical spellings in canonical order. An unknown
// name is an ErrInvalid error that names it and lists the valid ones.
func NormalizeKeyPermissions(perms []string) ([]string, error) {
	want := map[Action]bool{}
	for _, raw := range perms {
		p := strings.TrimSpace(raw)
		if p == "" {
			continue
		}
		if strings.EqualFold(p, KeyPermissionsAllName) {
			for _, a := range KeyPermissionActions() {
				want[a] = true
			}
			continue
		}
		a, ok := keyPermissionAction(p)
		if !ok {
			return nil, fmt.Errorf("%w: unknown key permission %q: use any of %s, or all", ErrInvalid, p, strings.Join(KeyPermissionNames(), ", "))
		}
		want[a] = true
	}
	out := []string{}
	for _, a := range KeyPermissionActions() {
		if want[a] {
			out = append(out, strings.TrimPrefix(string(a), "vault/keys/"))
		}
	}
	return out, nil
}

func normalizeVault(vault string) (string, error) {
	if err := wire.ValidateVaultName(vault); err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return strings.ToLower(vault), nil
}

// SetPolicy sets (replaces) the key permissions of objectID in vault. An empty permission
// list is refused: delete the policy instead. The caller resolves names to object ids and
// checks that the vault exists.
func (s *Service) SetPolicy(ctx context.Context, vault, objectID string, keyPermissions []string) (AccessPolicy, error) {
	v, err := normalizeVault(vault)
	if err != nil {
		return AccessPolicy{}, err
	}
	objectID = strings.TrimSpace(objectID)
	if objectID == "" {
		return AccessPolicy{}, fmt.Errorf("%w: no object id: give the principal's object id", ErrInvalid)
	}
	perms, err := NormalizeKeyPermissions(keyPermissions)
	if err != nil {
		return AccessPolicy{}, err
	}
	if len(perms) == 0 {
		return AccessPolicy{}, fmt.Errorf("%w: no key permissions given: list some (e.g. get,wrapKey,unwrapKey) or delete the policy", ErrInvalid)
	}
	if _, isToken := s.tokenByObjectID(ctx, objectID); isToken {
		return AccessPolicy{}, fmt.Errorf("%w: %s is a repository token: it can never use a vault", ErrInvalid, objectID)
	}
	pol := AccessPolicy{Vault: v, ObjectID: objectID, KeyPermissions: perms, UpdatedAt: s.now().UTC().Truncate(time.Second)}
	_, err = s.db.ExecContext(ctx, `INSERT INTO access_vault_policies (vault, object_id, key_permissions, updated_at)
		VALUES (?, ?, ?, ?)
		ON CONFLICT (vault, object_id) DO UPDATE SET key_permissions = excluded.key_permissions, updated_at = excluded.updated_at`,
		v, objectID, strings.Join(perms, ","), pol.UpdatedAt.Unix())
	if err != nil {
		return AccessPolicy{}, fmt.Errorf("set access policy: %w", err)
	}
	s.invalidate()
	return pol, nil
}

// DeletePolicy removes the access policy of objectID in vault. The revocation applies to
// the next Authorize call in this process.
func (s *Service) DeletePolicy(ctx context.Context, vault, objectID string) error {
	v, err := normalizeVault(vault)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `DELETE FROM access_vault_policies WHERE vault = ? AND object_id = ?`, v, objectID)
	if err != nil {
		return fmt.Errorf("delete access policy: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("vault %q has no access policy for %q: %w", v, objectID, ErrNotFound)
	}
	s.invalidate()
	return nil
}

// ListPolicies lists a vault's access policies, ordered by object id.
func (s *Service) ListPolicies(ctx context.Context, vault string) ([]AccessPolicy, error) {
	v, err := normalizeVault(vault)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT object_id, key_permissions, updated_at FROM access_vault_policies
		WHERE vault = ? ORDER BY object_id`, v)
	if err != nil {
		return nil, fmt.Errorf("list access policies: %w", err)
	}
	out := []AccessPolicy{}
	for rows.Next() {
		var oid, perms string
		var updated int64
		if err := rows.Scan(&oid, &perms, &updated); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list access policies: %w", err)
		}
		out = append(out, AccessPolicy{Vault: v, ObjectID: oid, KeyPermissions: splitList(perms), UpdatedAt: time.Unix(updated, 0).UTC()})
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("list access policies: %w", err)
	}
	return out, nil
}

// DeleteVaultPolicies removes every access policy of a vault (when the vault is purged).
// A vault with no policies is not an error.
func (s *Service) DeleteVaultPolicies(ctx context.Context, vault string) error {
	v, err := normalizeVault(vault)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM access_vault_policies WHERE vault = ?`, v); err != nil {
		return fmt.Errorf("delete access policies of vault %q: %w", v, err)
	}
	s.invalidate()
	return nil
}
