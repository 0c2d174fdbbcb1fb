package identity

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// DefaultSecretLifetime is the lifetime of a client secret when none is asked for.
const DefaultSecretLifetime = 365 * 24 * time.Hour

// CreateServicePrincipal creates a service principal with one client secret that expires
// after lifetime (DefaultSecretLifetime when 0). The secret's value is returned once.
func (s *Service) CreateServicePrincipal(ctx context.Context, displayName string, lifetime time.Duration) (Info, Secret, error) {
	if err := validName("service principal", displayName); err != nil {
		return Info{}, Secret{}, err
	}
	p := Principal{ID: uuid.NewString(), Kind: KindServicePrincipal, Name: displayName, ClientID: uuid.NewString()}
	if err := s.insert(ctx, p, ""); err != nil {
		return Info{}, Secret{}, err
	}
	sec, err := s.addSecret(ctx, p.ID, lifetime, false)
	if err != nil {
		return Info{}, Secret{}, err
	}
	info, err := s.Show(ctx, KindServicePrincipal, p.ID)
	return info, sec, err
}

// ResetCredential adds a new client secret to a service principal; unless keep is set the
// existing secrets are removed (like `az ad sp credential reset` without --append).
func (s *Service) ResetCredential(ctx context.Context, ref string, lifetime time.Duration, keep bool) (Info, Secret, error) {
	p, err := s.resolveKind(ctx, KindServicePrincipal, ref)
	if err != nil {
		return Info{}, Secret{}, err
	}
	sec, err := s.addSecret(ctx, p.ID, lifetime, !keep)
	if err != nil {
		return Info{}, Secret{}, err
	}
	info, err := s.Show(ctx, KindServicePrincipal, p.ID)
	return info, sec, err
}

func (s *Service) addSecret(ctx context.Context, principalID string, lifetime time.Duration, replace bool) (Secret, error) {
	if lifetime == 0 {
		lifetime = DefaultSecretLifetime
	}
	if lifetime < 0 {
		return Secret{}, fmt.Errorf("%w: a secret lifetime must be positive", ErrInvalid)
	}
	value, err := newSecret()
	if err != nil {
		return Secret{}, err
	}
	now := s.now().UTC().Truncate(time.Second)
	sec := Secret{CredentialInfo: CredentialInfo{ID: uuid.NewString(), Hint: value[:3], CreatedAt: now, ExpiresAt: now.Add(lifetime)}, Value: value}
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM identity_secrets WHERE principal_id = ?`, principalID); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM identity_refresh_tokens WHERE principal_id = ?`, principalID); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO identity_secrets (id, principal_id, hash, hint, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
			sec.ID, principalID, hashSecret(value), sec.Hint, sec.CreatedAt.Unix(), sec.ExpiresAt.Unix())
		return err
	})
	if replace {
		s.logins.forget(principalID)
	}
	if err != nil {
		return Secret{}, fmt.Errorf("store client secret: %w", err)
	}
	return sec, nil
}

func (s *Service) credentials(ctx context.Context, principalID string) ([]CredentialInfo, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, hint, created_at, expires_at FROM identity_secrets WHERE principal_id = ? ORDER BY created_at, id`, principalID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []CredentialInfo{}
	for rows.Next() {
		var c CredentialInfo
		var created, expires int64
		if err := rows.Scan(&c.ID, &c.Hint, &created, &expires); err != nil {
			return nil, err
		}
		c.CreatedAt, c.ExpiresAt = time.Unix(created, 0).UTC(), time.Unix(expires, 0).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}
