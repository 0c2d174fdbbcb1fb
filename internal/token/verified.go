package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// verifiedCache remembers tokens whose signature verified, so a client that sends the same
// token with every request (a push is two or three requests) pays the ECDSA verification
// once. It is keyed by a SHA-256 of the token and the audience it was checked for; an entry
// holds the claims and the key that verified them. A hit still checks everything that can
// change after the first verification: the time claims against the clock (expiry), that the
// signing key is still published with the same public key, and (in Verify) that the
// principal still exists. Only signature checks that succeeded are kept, so a forged or
// altered token is never answered from here (its hash differs from any verified token's).
type verifiedCache struct {
	mu      sync.Mutex
	entries map[verifiedKey]verifiedEntry
}

type verifiedKey struct {
	sum      [sha256.Size]byte
	audience string
}

type verifiedEntry struct {
	claims Claims
	kid    string
	pub    *ecdsa.PublicKey
	until  time.Time // the entry is dropped after this (the token's expiry plus leeway)
}

// maxVerified bounds the cache; when full it is emptied (tokens live minutes, and the ones
// in use are verified again at the cost of one signature check each).
const maxVerified = 4096

func (vc *verifiedCache) key(raw, audience string) verifiedKey {
	return verifiedKey{sum: sha256.Sum256([]byte(raw)), audience: audience}
}

// get returns the cached claims of k if the entry is still valid at now and its key is
// still the one published under its kid.
func (vc *verifiedCache) get(ctx context.Context, k verifiedKey, now time.Time, keys *KeySet, validator *jwt.Validator) (*Claims, bool) {
	vc.mu.Lock()
	e, ok := vc.entries[k]
	vc.mu.Unlock()
	if !ok {
		return nil, false
	}
	if now.After(e.until) {
		vc.drop(k)
		return nil, false
	}
	if pub, ok := keys.publicKey(ctx, e.kid); !ok || !pub.Equal(e.pub) {
		vc.drop(k)
		return nil, false
	}
	c := e.claims
	if validator.Validate(&c) != nil {
		vc.drop(k)
		return nil, false
	}
	return &c, true
}

func (vc *verifiedCache) put(k verifiedKey, c *Claims, kid string, pub *ecdsa.PublicKey, until time.Time) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if vc.entries == nil || len(vc.entries) >= maxVerified {
		vc.entries = make(map[verifiedKey]verifiedEntry)
	}
	vc.entries[k] = verifiedEntry{claims: *c, kid: kid, pub: pub, until: until}
}

func (vc *verifiedCache) drop(k verifiedKey) {
	vc.mu.Lock()
	delete(vc.entries, k)
	vc.mu.Unlock()
}
