package clocktest_test

import (
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clocktest"
)

func TestClock(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	c := clocktest.New(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now = %v, want %v", got, start)
	}
	c.Advance(90 * time.Second)
	if got := c.Now(); !got.Equal(start.Add(90 * time.Second)) {
		t.Fatalf("after Advance: %v", got)
	}
	c.Advance(-30 * time.Second)
	if got := c.Now(); !got.Equal(start.Add(time.Minute)) {
		t.Fatalf("after a negative Advance: %v", got)
	}
	c.Set(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("after Set: %v", got)
	}
}

// TestClockConcurrent is for the race detector: parts read the clock from their own
// goroutines while the test moves it.
func TestClockConcurrent(t *testing.T) {
	c := clocktest.New(time.Unix(0, 0))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				c.Advance(time.Second)
				_ = c.Now()
			}
		})
	}
	wg.Wait()
	if got := c.Now(); !got.Equal(time.Unix(400, 0)) {
		t.Fatalf("Now = %v after 400 advances of a second", got)
	}
}
