// Package clocktest is the fake clock that tests hand to a part's Now option: it stands
// still until the test moves it, so expiry, rotation and cache lifetimes are tested without
// waiting.
package clocktest

import (
	"sync"
	"time"
)

// Clock is a fake clock, safe for concurrent use: Now returns the same time until Advance
// or Set moves it.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock that stands at t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time; pass the method value (clk.Now) as a part's Now option.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d (backwards for a negative d).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}
