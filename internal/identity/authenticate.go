package identity

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
)

// Authenticate checks a username and secret: a user's name and password, a service
// principal's client id and client secret, or a repository token's name and password.
// Every failure returns ErrInvalidCredentials; the work done does not depend on whether the
// name exists. A success is remembered for a short time (see loginCache): the same name and
// secret again skip argon2id while the stored credential is unchanged.
func (s *Service) Authenticate(ctx context.Context, username, secret string) (Principal, error) {
	if username == "" || secret == "" || len(username) > 256 || len(secret) > 1024 {
		s.checkPassword(dummyHash, secret)
		return Principal{}, ErrInvalidCredentials
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, kind, name, COALESCE(client_id, ''), COALESCE(secret_hash, '') FROM identity_principals
		WHERE (kind = ? AND name = ?) OR (kind = ? AND name = ?) OR (kind = ? AND client_id = ?) ORDER BY kind, id`,
		string(KindUser), username, string(KindRepositoryToken), username, string(KindServicePrincipal), username)
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	type cand struct {
		p    Principal
		hash string
	}
	var cands []cand
	for rows.Next() {
		var c cand
		var kind string
		if err := rows.Scan(&c.p.ID, &kind, &c.p.Name, &c.p.ClientID, &c.hash); err != nil {
			rows.Close()
			return Principal{}, fmt.Errorf("authenticate: %w", err)
		}
		c.p.Kind = Kind(kind)
		cands = append(cands, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	now := s.now()
	ck := s.logins.key(username, secret)
	if e, hit := s.logins.get(ck, now); hit {
		// A login these credentials passed a moment ago: accept it again only if the
		// principal and its stored credential are still the ones it passed against.
		for i := range cands {
			c := &cands[i]
			if c.p.ID != e.principalID {
				continue
			}
			var ok bool
			switch c.p.Kind {
			case KindUser:
				st := s.logins.stamp(c.hash)
				ok = hmac.Equal(e.stamp[:], st[:])
			case KindRepositoryToken:
				ok = c.hash != "" && checkSecret(c.hash, secret)
			case KindServicePrincipal:
				if ok, err = s.checkClientSecret(ctx, c.p.ID, secret); err != nil {
					return Principal{}, err
				}
			}
			if ok {
				return c.p, nil
			}
		}
		s.logins.drop(ck) // stale: verify in full below
	}
	var found *cand
	checkedPassword := false
	for i := range cands {
		c := &cands[i]
		var ok bool
		switch c.p.Kind {
		case KindUser:
			checkedPassword = true
			ok, _ = s.checkPassword(c.hash, secret)
		case KindRepositoryToken:
			ok = c.hash != "" && checkSecret(c.hash, secret)
		case KindServicePrincipal:
			ok, err = s.checkClientSecret(ctx, c.p.ID, secret)
			if err != nil {
				return Principal{}, err
			}
		}
		if ok && found == nil {
			found = c
		}
	}
	if !checkedPassword {
		// Equalize timing with a user login so names cannot be probed.
		s.checkPassword(dummyHash, secret)
	}
	if found == nil {
		return Principal{}, ErrInvalidCredentials
	}
	e := loginEntry{principalID: found.p.ID, expires: now.Add(s.logins.ttl)}
	if found.p.Kind == KindUser {
		e.stamp = s.logins.stamp(found.hash)
	}
	s.logins.put(ck, e, now)
	return found.p, nil
}

// AuthenticateClient checks a service principal's client id and secret (OAuth2 client
// credentials).
func (s *Service) AuthenticateClient(ctx context.Context, clientID, secret string) (Principal, error) {
	p, err := s.lookupOne(ctx, `kind = ? AND client_id = ?`, string(KindServicePrincipal), clientID)
	if err != nil {
		checkSecret(dummyHash, secret)
		if errors.Is(err, ErrNotFound) {
			return Principal{}, ErrInvalidCredentials
		}
		return Principal{}, err
	}
	ok, err := s.checkClientSecret(ctx, p.ID, secret)
	if err != nil {
		return Principal{}, err
	}
	if !ok {
		return Principal{}, ErrInvalidCredentials
	}
	return p, nil
}

func (s *Service) checkClientSecret(ctx context.Context, principalID, secret string) (bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT hash FROM identity_secrets WHERE principal_id = ? AND expires_at > ?`,
		principalID, s.now().Unix())
	if err != nil {
		return false, fmt.Errorf("authenticate: %w", err)
	}
	defer rows.Close()
	ok := false
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return false, err
		}
		if checkSecret(h, secret) {
			ok = true
		}
	}
	return ok, rows.Err()
}
