package identity

import (
	"sync"
	"time"
)

// LoginLimiter counts failed logins per key (a client address, a name from an address, a
// name): once a key has failed Limit times within Window, Check reports how long until the
// oldest failure leaves the window. The token endpoints decide what that means for each
// key (refusal for an address, a delay for a name). It is in memory, per process.
type LoginLimiter struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu       sync.Mutex
	failures map[string][]time.Time
}

// maxLimiterKeys bounds the limiter's memory; beyond it stale keys are swept.
const maxLimiterKeys = 100_000

// NewLoginLimiter returns a limiter of limit failures per window (limit <= 0: no limit).
func NewLoginLimiter(limit int, window time.Duration, now func() time.Time) *LoginLimiter {
	if now == nil {
		now = time.Now
	}
	return &LoginLimiter{limit: limit, window: window, now: now, failures: map[string][]time.Time{}}
}

// Check returns how long to wait before an attempt for any of keys may be tried (0: now).
func (l *LoginLimiter) Check(keys ...string) time.Duration {
	if l == nil || l.limit <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var wait time.Duration
	for _, k := range keys {
		if k == "" {
			continue
		}
		f := l.prune(k, now)
		if len(f) >= l.limit {
			if w := f[len(f)-l.limit].Add(l.window).Sub(now); w > wait {
				wait = w
			}
		}
	}
	return wait
}

// Fail records a failed attempt for each of keys.
func (l *LoginLimiter) Fail(keys ...string) {
	if l == nil || l.limit <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.failures) > maxLimiterKeys {
		for k := range l.failures {
			l.prune(k, now)
		}
	}
	for _, k := range keys {
		if k == "" {
			continue
		}
		f := append(l.prune(k, now), now)
		if len(f) > l.limit {
			f = f[len(f)-l.limit:]
		}
		l.failures[k] = f
	}
}

// Reset forgets the failures recorded for key. After a successful login the name's count
// starts again (a few typos before it no longer count towards a lockout); the address's is
// deliberately kept, so that one valid account does not clear throttling of guesses at
// others from the same address.
func (l *LoginLimiter) Reset(key string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, key)
}

// prune drops failures older than the window; the caller holds mu.
func (l *LoginLimiter) prune(k string, now time.Time) []time.Time {
	f := l.failures[k]
	i := 0
	for i < len(f) && now.Sub(f[i]) >= l.window {
		i++
	}
	f = f[i:]
	if len(f) == 0 {
		delete(l.failures, k)
		return nil
	}
	l.failures[k] = f
	return f
}
