package filesystem

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestDirSyncerSharesFsyncs: callers that ask while an fsync of the same directory is in
// flight share the next one, and nobody is answered by an fsync that began before it
// asked.
func TestDirSyncerSharesFsyncs(t *testing.T) {
	s := newDirSyncer()
	var calls atomic.Int64
	var asked atomic.Int64 // callers that have asked so far
	release := make(chan struct{})
	started := make(chan int64, 100)
	s.syncDir = func(dir string) error {
		calls.Add(1)
		started <- asked.Load() // how many had asked when this fsync began
		<-release
		return nil
	}
	// The first caller starts an fsync and it blocks.
	var wg sync.WaitGroup
	answered := make([]atomic.Bool, 9)
	ask := func(i int) {
		defer wg.Done()
		asked.Add(1)
		if err := s.sync("d"); err != nil {
			t.Error(err)
		}
		answered[i].Store(true)
	}
	wg.Add(1)
	go ask(0)
	if n := <-started; n != 1 {
		t.Fatalf("first fsync began after %d callers, want 1", n)
	}
	// Eight more ask while it is in flight; they must not be answered by it.
	for i := 1; i <= 8; i++ {
		wg.Add(1)
		go ask(i)
	}
	queued := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.dirs["d"].waiting)
	}
	for queued() < 8 { // all eight wait for the next fsync
		runtime.Gosched()
	}
	release <- struct{}{} // the first fsync ends: only caller 0 may be answered
	if n := <-started; n != 9 {
		t.Fatalf("second fsync began after %d callers, want all 9", n)
	}
	for i := 1; i <= 8; i++ {
		if answered[i].Load() {
			t.Fatalf("caller %d was answered by an fsync that began before it asked", i)
		}
	}
	release <- struct{}{}
	wg.Wait()
	if c := calls.Load(); c != 2 {
		t.Fatalf("%d fsyncs for 9 callers, want 2 (one in flight, one shared by the eight)", c)
	}
	// An error reaches every caller of its batch.
	s.syncDir = func(string) error { return errors.New("disk gone") }
	if err := s.sync("d"); err == nil {
		t.Fatal("fsync error not returned")
	}
}
