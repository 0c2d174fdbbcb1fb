package storetest

import (
	"errors"
	"sync"
	"testing"
)

// AtOnce runs f(0) … f(n-1) in goroutines released together (the writers a storage suite
// races, where SQLite's single writer used to order them) and returns their errors by i.
func AtOnce(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// OneWins fails t unless exactly one of errs is nil and every other one is loser: of
// callers making one thing at once (a name, a version), one makes it and the others are
// told it exists.
func OneWins(t testing.TB, what string, errs []error, loser error) {
	t.Helper()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, loser):
			t.Errorf("%s at once: %v, want %v", what, err, loser)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d %s at once succeeded, want 1", won, len(errs), what)
	}
}
