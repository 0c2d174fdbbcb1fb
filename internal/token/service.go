package token

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/cofferhq/coffer/internal/identity"
)

// ErrInvalidToken is wrapped by every verification failure.
var ErrInvalidToken = errors.New("invalid token")

// DefaultLeeway is the clock skew tolerated when checking exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// Issuer is the "iss" of every token of a tenant. It does not depend on the host name a
// client used to reach the server, so a token verifies whatever URL it was fetched from.
func Issuer(tenantID string) string { return "urn:coffer:tenant:" + tenantID }

// Principals tells whether a token's principal still exists (*identity.Service does).
type Principals interface {
	Exists(ctx context.Context, id string) (bool, error)
}

// ErrPrincipalGone refuses a token whose principal was deleted.
var ErrPrincipalGone = fmt.Errorf("%w: its principal no longer exists", ErrInvalidToken)

// Service issues and verifies tokens. It implements authn.Verifier.
type Service struct {
	principals Principals
	keys       *KeySet
	tenantID   string
	issuer     string
	ttl        time.Duration
	leeway     time.Duration
	now        func() time.Time
	verified   verifiedCache
}

// Options configure a Service.
type Options struct {
	TenantID string
	// Principals, when set, is asked on every Verify whether the token's principal still
	// exists: a deleted principal's tokens are refused at once, not when they expire.
	Principals Principals
	// TTL is the lifetime of issued tokens.
	TTL time.Duration
	// Leeway is the tolerated clock skew (DefaultLeeway when 0).
	Leeway time.Duration
	Now    func() time.Time
}

// NewService returns a token service signing with keys.
func NewService(keys *KeySet, opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Leeway == 0 {
		opts.Leeway = DefaultLeeway
	}
	if opts.TTL <= 0 {
		opts.TTL = 10 * time.Minute
	}
	return &Service{principals: opts.Principals, keys: keys, tenantID: opts.TenantID, issuer: Issuer(opts.TenantID), ttl: opts.TTL, leeway: opts.Leeway, now: opts.Now}
}

// TTL is the lifetime of issued tokens.
func (s *Service) TTL() time.Duration { return s.ttl }

// TenantID is the tenant the service issues tokens for.
func (s *Service) TenantID() string { return s.tenantID }

// Keys is the service's key set (JWKS, rotation).
func (s *Service) Keys() *KeySet { return s.keys }

// Grant is what a token is issued for.
type Grant struct {
	Principal identity.Principal
	Audience  string
	// Access is the registry grant (nil for other audiences).
	Access []Access
}

// Issued is a signed token.
type Issued struct {
	Raw       string
	IssuedAt  time.Time
	ExpiresAt time.Time
	Claims    *Claims
}

// Issue signs a token for g with the current signing key.
func (s *Service) Issue(ctx context.Context, g Grant) (Issued, error) {
	if g.Audience == "" {
		return Issued{}, errors.New("issue token: no audience")
	}
	key, err := s.keys.signer(ctx)
	if err != nil {
		return Issued{}, err
	}
	now := s.now().Truncate(time.Second)
	exp := now.Add(s.ttl)
	sub := g.Principal.ID
	if sub == "" {
		sub = g.Principal.Name
	}
	c := &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.issuer,
			Subject:   sub,
			Audience:  jwt.ClaimStrings{g.Audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        uuid.NewString(),
		},
		ObjectID: g.Principal.ID,
		TenantID: s.tenantID,
		AppID:    g.Principal.ClientID,
		Kind:     g.Principal.Kind,
		Name:     g.Principal.Name,
		Access:   g.Access,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	t.Header["kid"] = key.KID
	raw, err := t.SignedString(key.priv)
	if err != nil {
		return Issued{}, fmt.Errorf("sign token: %w", err)
	}
	return Issued{Raw: raw, IssuedAt: now, ExpiresAt: exp, Claims: c}, nil
}

// Verify checks raw's signature (by kid, ES256 only), issuer, audience, expiry and
// not-before (with a small leeway) and returns its claims. A token whose signature verified
// before is not checked again (verified.go); its time claims, its key and its principal are.
func (s *Service) Verify(ctx context.Context, raw string, audience string) (*Claims, error) {
	if len(raw) > 16<<10 {
		return nil, fmt.Errorf("%w: too long", ErrInvalidToken)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"ES256"}),
		jwt.WithIssuer(s.issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(s.leeway),
		jwt.WithTimeFunc(s.now),
	}
	key := s.verified.key(raw, audience)
	c, hit := s.verified.get(ctx, key, s.now(), s.keys, jwt.NewValidator(opts...))
	if !hit {
		c = &Claims{}
		var kid string
		var pub *ecdsa.PublicKey
		_, err := jwt.ParseWithClaims(raw, c, func(t *jwt.Token) (any, error) {
			kid, _ = t.Header["kid"].(string)
			if kid == "" {
				return nil, errors.New("no kid")
			}
			var ok bool
			if pub, ok = s.keys.publicKey(ctx, kid); !ok {
				return nil, errors.New("unknown signing key")
			}
			return pub, nil
		}, opts...)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrInvalidToken, reason(err))
		}
		if c.ExpiresAt != nil {
			s.verified.put(key, c, kid, pub, c.ExpiresAt.Add(s.leeway))
		}
	}
	if c.Kind == "" || (c.ObjectID == "" && c.Kind != identity.KindAnonymous) {
		return nil, fmt.Errorf("%w: no principal", ErrInvalidToken)
	}
	if s.principals != nil && c.Kind != identity.KindAnonymous {
		ok, err := s.principals.Exists(ctx, c.ObjectID)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, ErrPrincipalGone
		}
	}
	return c, nil
}

// reason turns a jwt error into a short message safe to show a client.
func reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "token is not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "token is for another audience"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "token is from another issuer"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "signature does not verify"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	default:
		return "token does not verify"
	}
}
