package filesystem

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestCommitterSharesFlushes: commits that arrive while a round is in flight share the
// next round, and that round's first syncfs is the previous round's second: nine commits
// in two rounds cost three syncfs calls, not four. The bytes are flushed before the
// renames, the renames before the answer.
func TestCommitterSharesFlushes(t *testing.T) {
	ctx := context.Background()
	d, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	var answered [9]atomic.Bool
	gate := make(chan struct{})
	var mu sync.Mutex
	visibleAt := map[int64]int{}  // syncfs call → objects visible when it began
	answeredAt := map[int64]int{} // syncfs call → commits answered when it began
	visible := func() int {
		n := 0
		for i := range 9 {
			if _, err := os.Stat(d.dataPath(fmt.Sprintf("blobs/%02x/o%d", i*37, i))); err == nil {
				n++
			}
		}
		return n
	}
	d.commits.syncFS = func() error {
		n := calls.Add(1)
		mu.Lock()
		visibleAt[n] = visible()
		for i := range answered {
			if answered[i].Load() {
				answeredAt[n]++
			}
		}
		mu.Unlock()
		if n == 1 {
			<-gate
		}
		return nil
	}
	var wg sync.WaitGroup
	commit := func(i int) {
		defer wg.Done()
		w, err := d.Writer(ctx, fmt.Sprintf("uploads/u%d", i))
		if err != nil {
			t.Error(err)
			return
		}
		fmt.Fprintf(w, "object %d", i)
		if err := w.(*writer).CommitAt(ctx, fmt.Sprintf("blobs/%02x/o%d", i*37, i)); err != nil {
			t.Error(err)
		}
		answered[i].Store(true)
	}
	wg.Add(1)
	go commit(0)
	for calls.Load() < 1 {
		runtime.Gosched()
	}
	for i := 1; i < 9; i++ {
		wg.Add(1)
		go commit(i)
	}
	queued := func() int {
		d.commits.mu.Lock()
		defer d.commits.mu.Unlock()
		return len(d.commits.waiting)
	}
	for queued() < 8 {
		runtime.Gosched()
	}
	for i := range answered {
		if answered[i].Load() {
			t.Fatalf("commit %d answered while the first flush was still running", i)
		}
	}
	close(gate)
	wg.Wait()
	if c := calls.Load(); c != 3 {
		t.Fatalf("%d syncfs calls for 9 commits, want 3 (two rounds sharing one)", c)
	}
	// Call 1 flushes commit 0's bytes (nothing visible yet); call 2 its rename (1 visible,
	// none answered) and the other eight's bytes; call 3 their renames (9 visible, none of
	// the eight answered: at most commit 0).
	for call, want := range map[int64][2]int{1: {0, 0}, 2: {1, 0}, 3: {9, 1}} {
		if visibleAt[call] != want[0] || answeredAt[call] > want[1] {
			t.Errorf("syncfs call %d began with %d objects visible and %d answered, want %d and at most %d",
				call, visibleAt[call], answeredAt[call], want[0], want[1])
		}
	}
	for i := range 9 {
		r, err := d.Reader(ctx, fmt.Sprintf("blobs/%02x/o%d", i*37, i), 0)
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
}

// TestCommitterWithoutSyncfs: where syncfs is missing, each file is flushed and each
// distinct directory once per round.
func TestCommitterWithoutSyncfs(t *testing.T) {
	ctx := context.Background()
	d, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var files atomic.Int64
	dirs := map[string]int{}
	c := &committer{
		syncFile: func(f *os.File) error { files.Add(1); return f.Sync() },
		syncDir:  func(dir string) error { dirs[filepath.Base(dir)]++; return nil },
	}
	var batch []*commitReq
	for i, dst := range []string{"a/1", "a/2", "a/3", "b/1"} {
		w, err := d.Writer(ctx, fmt.Sprintf("uploads/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(dst))
		batch = append(batch, &commitReq{f: w.(*writer).f, dst: d.dataPath(dst)})
	}
	c.round(batch)
	for _, r := range batch {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	if files.Load() != 4 || dirs["a"] != 1 || dirs["b"] != 1 {
		t.Fatalf("flushed %d files and directories %v, want 4 files and a, b once each", files.Load(), dirs)
	}
	if _, err := d.Stat(ctx, "a/3"); err != nil {
		t.Fatal(err)
	}
}

// TestCommitFlushErrorKeepsObjectInvisible: a failed flush of the bytes fails the commit
// and leaves nothing at the destination.
func TestCommitFlushErrorKeepsObjectInvisible(t *testing.T) {
	ctx := context.Background()
	d, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d.commits.syncFS = func() error { return errors.New("disk gone") }
	w, _ := d.Writer(ctx, "uploads/x")
	w.Write([]byte("x"))
	if err := w.Commit(ctx); err == nil {
		t.Fatal("commit succeeded although its flush failed")
	}
	if _, err := d.Stat(ctx, "uploads/x"); err == nil {
		t.Fatal("object visible after a failed flush")
	}
}
