package signatures

import (
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// cacheKey is what a verification result depends on: the signature, what it is checked
// against and the policy version (which every anchor or policy change bumps). The
// repository is in it because rules differ per repository.
type cacheKey struct {
	repo                string
	manifest, signature digest.Digest
	version             int64
}

// verdictKey keys a manifest's positive verdict.
type verdictKey struct {
	repo     string
	manifest digest.Digest
	version  int64
}

type cacheEntry[V any] struct {
	res   V
	until time.Time
}

// cache holds verification results until they expire (a certificate's end of validity,
// at most maxCacheTTL). When full, it drops entries of older policy versions and expired
// ones, then half of the rest.
type cache[K comparable, V any] struct {
	mu  sync.RWMutex
	max int
	m   map[K]cacheEntry[V]
}

func newCache[K comparable, V any](max int) *cache[K, V] {
	return &cache[K, V]{max: max, m: map[K]cacheEntry[V]{}}
}

func (c *cache[K, V]) get(k K, now time.Time) (V, bool) {
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		var zero V
		return zero, false
	}
	return e.res, true
}

func (c *cache[K, V]) put(k K, res V, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		now := time.Now()
		for ok, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, ok)
			}
		}
		for ok := range c.m {
			if len(c.m) < c.max/2 {
				break
			}
			delete(c.m, ok)
		}
	}
	c.m[k] = cacheEntry[V]{res: res, until: until}
}

func (c *cache[K, V]) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
