package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
)

// The login cache remembers successful verifications of a name and secret for a short
// time, so that a client sending the same credentials with every token request (docker,
// CI pipelines, client-credentials workloads) pays argon2id once per loginCacheTTL rather
// than every time.
//
//   - It holds neither the secret nor a plain hash of it: an entry is found by
//     HMAC-SHA256(process key, name, secret) under a random key made when the process
//     starts and never stored, and it holds the principal's id and an HMAC of the stored
//     credential hash it was verified against.
//   - Only successes are stored. A wrong secret has another HMAC, finds nothing, and is
//     verified in full (argon2id), as slow as without the cache.
//   - A hit is accepted only while the principal still exists and its stored credential is
//     still the one the entry was made with (users: the password hash, read by the same
//     query a login makes anyway; service principals and repository tokens: their cheap
//     SHA-256 check is redone), so a password change, a credential reset or a deletion
//     takes effect at once, on this replica and on every other. This process also drops a
//     principal's entries when it changes them.
//   - At most loginCacheMax entries, each for at most loginCacheTTL.
const (
	loginCacheTTL = 5 * time.Minute
	loginCacheMax = 10_000
)

type loginKey [sha256.Size]byte

type loginEntry struct {
	principalID string
	// stamp is the HMAC of the user's stored password hash (zero for other kinds).
	stamp   loginKey
	expires time.Time
}

type loginCache struct {
	secret [32]byte // the per-process HMAC key
	ttl    time.Duration
	max    int

	mu      sync.Mutex
	entries map[loginKey]loginEntry
}

func newLoginCache(max int, ttl time.Duration) *loginCache {
	c := &loginCache{ttl: ttl, max: max, entries: map[loginKey]loginEntry{}}
	if _, err := rand.Read(c.secret[:]); err != nil {
		// crypto/rand does not fail on supported platforms; without a key, cache nothing.
		c.max = 0
	}
	return c
}

// key is the entry's key for a name and secret.
func (c *loginCache) key(name, secret string) loginKey {
	m := hmac.New(sha256.New, c.secret[:])
	var n [binary.MaxVarintLen64]byte
	m.Write([]byte("login\x00"))
	m.Write(n[:binary.PutUvarint(n[:], uint64(len(name)))])
	m.Write([]byte(name))
	m.Write([]byte(secret))
	var k loginKey
	m.Sum(k[:0])
	return k
}

// stamp fingerprints a stored credential hash.
func (c *loginCache) stamp(storedHash string) loginKey {
	m := hmac.New(sha256.New, c.secret[:])
	m.Write([]byte("stamp\x00"))
	m.Write([]byte(storedHash))
	var k loginKey
	m.Sum(k[:0])
	return k
}

func (c *loginCache) get(k loginKey, now time.Time) (loginEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if ok && !now.Before(e.expires) {
		delete(c.entries, k)
		return loginEntry{}, false
	}
	return e, ok
}

func (c *loginCache) put(k loginKey, e loginEntry, now time.Time) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for key, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, key)
			}
		}
		// Still full: drop arbitrary entries (they only cost one argon2id run each).
		for key := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, key)
		}
	}
	c.entries[k] = e
}

func (c *loginCache) drop(k loginKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, k)
}

// forget drops every entry of a principal (its credential changed or it was deleted).
func (c *loginCache) forget(principalID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if e.principalID == principalID {
			delete(c.entries, k)
		}
	}
}

func (c *loginCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
