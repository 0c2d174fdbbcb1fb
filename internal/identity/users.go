package identity

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/google/uuid"
)

// NeedsBootstrap reports whether the administrator has never been created.
func (s *Service) NeedsBootstrap(ctx context.Context) (bool, error) {
	v, err := s.meta(ctx, "admin_created")
	if err != nil {
		return false, err
	}
	return v == "", nil
}

// BootstrapAdmin creates the administrator "admin" with password and records that the
// bootstrap happened, so that it never happens again (even if admin is later deleted).
func (s *Service) BootstrapAdmin(ctx context.Context, password string) (Principal, error) {
	hash, err := hashPassword(password)
	if err != nil {
		return Principal{}, err
	}
	p := Principal{ID: uuid.NewString(), Kind: KindUser, Name: AdminName}
	now := s.now().Unix()
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM identity_principals WHERE kind = ? AND name = ?`,
			string(KindUser), AdminName).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO identity_principals (id, kind, name, client_id, secret_hash, created_at, updated_at)
				VALUES (?, ?, ?, NULL, ?, ?, ?)`, p.ID, string(p.Kind), p.Name, hash, now, now); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO identity_meta (key, value) VALUES ('admin_created', ?)`, fmt.Sprint(now))
		return err
	})
	if err != nil {
		return Principal{}, fmt.Errorf("create administrator: %w", err)
	}
	return s.lookupOne(ctx, `kind = ? AND name = ?`, string(KindUser), AdminName)
}

// CreateUser creates a user with a password (at least 8 characters).
func (s *Service) CreateUser(ctx context.Context, name, password string) (Principal, error) {
	if err := validName("user", name); err != nil {
		return Principal{}, err
	}
	if err := validPassword(password); err != nil {
		return Principal{}, err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return Principal{}, err
	}
	p := Principal{ID: uuid.NewString(), Kind: KindUser, Name: name}
	if err := s.insert(ctx, p, hash); err != nil {
		return Principal{}, err
	}
	return p, nil
}

func validPassword(pw string) error {
	if len(pw) < 8 {
		return fmt.Errorf("%w: a password needs at least 8 characters", ErrInvalid)
	}
	if len(pw) > 1024 {
		return fmt.Errorf("%w: a password has at most 1024 bytes", ErrInvalid)
	}
	return nil
}

// SetPassword changes a user's password and revokes the user's refresh tokens.
func (s *Service) SetPassword(ctx context.Context, name, password string) error {
	if err := validPassword(password); err != nil {
		return err
	}
	p, err := s.resolveKind(ctx, KindUser, name)
	if err != nil {
		return err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	defer s.logins.forget(p.ID)
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE identity_principals SET secret_hash = ?, updated_at = ? WHERE id = ?`,
			hash, s.now().Unix(), p.ID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM identity_refresh_tokens WHERE principal_id = ?`, p.ID)
		return err
	})
}
