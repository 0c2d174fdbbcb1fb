package identity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// RefreshTokenLifetime is how long a refresh token (kept by `coffer login` and by docker
// as its identity token) stays valid.
const RefreshTokenLifetime = 90 * 24 * time.Hour

const refreshPrefix = "cfr1."

// ErrRefreshAudience refuses a refresh token redeemed for an audience other than the one
// it was issued for (a registry client's identity token asking for a management token).
var ErrRefreshAudience = fmt.Errorf("%w: this refresh token was issued for another audience", ErrInvalidCredentials)

// IssueRefreshToken creates a refresh token for p, bound to audience: an opaque string
// "cfr1.<id>.<secret>" whose secret is stored hashed, that RedeemRefreshToken accepts for
// that audience only, so the identity token a registry client keeps (docker's
// config.json) never mints management tokens. Changing a user's password, resetting a
// service principal's credentials without --append, or deleting the principal revokes it.
func (s *Service) IssueRefreshToken(ctx context.Context, p Principal, audience string) (string, error) {
	if audience == "" {
		return "", fmt.Errorf("%w: a refresh token needs an audience", ErrInvalid)
	}
	secret, err := newSecret()
	if err != nil {
		return "", err
	}
	id := uuid.NewString()
	now := s.now()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO identity_refresh_tokens (id, principal_id, hash, created_at, expires_at, audience) VALUES (?, ?, ?, ?, ?, ?)`,
		id, p.ID, hashSecret(secret), now.Unix(), now.Add(RefreshTokenLifetime).Unix(), audience); err != nil {
		return "", fmt.Errorf("store refresh token: %w", err)
	}
	return refreshPrefix + id + "." + secret, nil
}

// RedeemRefreshToken returns the principal a valid refresh token was issued to, when it
// was issued for audience. Every failure is ErrInvalidCredentials (ErrRefreshAudience for
// a valid token of another audience).
func (s *Service) RedeemRefreshToken(ctx context.Context, raw, audience string) (Principal, error) {
	rest, ok := strings.CutPrefix(raw, refreshPrefix)
	if !ok {
		return Principal{}, ErrInvalidCredentials
	}
	id, secret, ok := strings.Cut(rest, ".")
	if !ok || id == "" || secret == "" || len(id) > 64 {
		return Principal{}, ErrInvalidCredentials
	}
	var principalID, hash, aud string
	var expires int64
	err := s.db.QueryRowContext(ctx, `SELECT principal_id, hash, expires_at, audience FROM identity_refresh_tokens WHERE id = ?`, id).
		Scan(&principalID, &hash, &expires, &aud)
	if errors.Is(err, sql.ErrNoRows) {
		checkSecret(hashSecret(""), secret)
		return Principal{}, ErrInvalidCredentials
	}
	if err != nil {
		return Principal{}, fmt.Errorf("refresh token: %w", err)
	}
	if !checkSecret(hash, secret) || s.now().Unix() >= expires {
		return Principal{}, ErrInvalidCredentials
	}
	if aud != audience {
		return Principal{}, fmt.Errorf("%w %s, not %s", ErrRefreshAudience, aud, audience)
	}
	p, err := s.Get(ctx, principalID)
	if errors.Is(err, ErrNotFound) {
		return Principal{}, ErrInvalidCredentials
	}
	return p, err
}

// RevokeRefreshTokens revokes every refresh token of a principal (`coffer logout` of all
// sessions, compromised credentials).
func (s *Service) RevokeRefreshTokens(ctx context.Context, principalID string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM identity_refresh_tokens WHERE principal_id = ?`, principalID)
	return err
}

// RevokeRefreshToken revokes one refresh token (RFC 7009: revoking an unknown or invalid
// token is not an error).
func (s *Service) RevokeRefreshToken(ctx context.Context, raw string) error {
	rest, ok := strings.CutPrefix(raw, refreshPrefix)
	if !ok {
		return nil
	}
	id, secret, ok := strings.Cut(rest, ".")
	if !ok || len(id) > 64 {
		return nil
	}
	var hash string
	err := s.db.QueryRowContext(ctx, `SELECT hash FROM identity_refresh_tokens WHERE id = ?`, id).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("revoke refresh token: %w", err)
	}
	if !checkSecret(hash, secret) {
		return nil
	}
	_, err = s.db.ExecContext(ctx, `DELETE FROM identity_refresh_tokens WHERE id = ?`, id)
	return err
}
