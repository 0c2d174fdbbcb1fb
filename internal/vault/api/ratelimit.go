package api

import (
	"math"
	"time"
)

// bucket is one vault's token bucket: the rate limit applies per vault.
type bucket struct {
	tokens float64
	last   time.Time
}

func (h *Handler) allow(name string) (time.Duration, bool) {
	rate := h.cfg.RateLimit
	if rate <= 0 {
		return 0, true
	}
	burst := math.Max(rate, 1)
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.buckets[name]
	if !ok {
		if len(h.buckets) > 10000 {
			clear(h.buckets)
		}
		b = &bucket{tokens: burst, last: now}
		h.buckets[name] = b
	}
	b.tokens = math.Min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / rate * float64(time.Second)), false
}
