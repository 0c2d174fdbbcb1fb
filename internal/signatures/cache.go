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

type cacheEntry struct {
	res   sigResult
	until time.Time
}

// cache holds verification results until they expire (a certificate's end of validity,
// at most maxCacheTTL). When full, it drops entries of older policy versions and expired
// ones, then half of the rest.
type cache struct {
	mu  sync.RWMutex
	max int
	m   map[cacheKey]cacheEntry
}

func newCache(max int) *cache { return &cache{max: max, m: map[cacheKey]cacheEntry{}} }

func (c *cache) get(k cacheKey, now time.Time) (sigResult, bool) {
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return sigResult{}, false
	}
	return e.res, true
}

func (c *cache) put(k cacheKey, res sigResult, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		now := time.Now()
		for ok, e := range c.m {
			if ok.version != k.version || !now.Before(e.until) {
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
	c.m[k] = cacheEntry{res: res, until: until}
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
