package filesystem_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/blobstore/drivertest"
	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
)

func TestDriver(t *testing.T) {
	drivertest.Run(t, func(t *testing.T) blobstore.Driver {
		d, err := filesystem.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

// TestNoPartialVisibleAfterReopen: uncommitted bytes left by a crash stay invisible to a new
// driver on the same directory, and resumable.
func TestNoPartialVisibleAfterReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, _ := filesystem.New(dir)
	w, _ := d.Writer(ctx, "uploads/x")
	w.Write([]byte("half"))
	// no Close: as after a crash
	d2, err := filesystem.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d2.Stat(ctx, "uploads/x"); err == nil {
		t.Fatal("uncommitted object visible after reopen")
	}
	w2, err := d2.ResumeWriter(ctx, "uploads/x")
	if err != nil || w2.Size() != 4 {
		t.Fatalf("resume after reopen: %v size %d", err, w2.Size())
	}
	w2.Close()
}

func TestFileModes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, _ := filesystem.New(dir)
	w, _ := d.Writer(ctx, "a/b")
	w.Write([]byte("x"))
	w.Commit(ctx)
	fi, err := os.Stat(filepath.Join(dir, "data", "a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("object mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestWritersRaceWithPruning: writers creating objects in a directory that Delete prunes
// when it empties never fail. os.MkdirAll answers "file exists" when the directory it
// found existing is pruned before it checks it, which 8 concurrent small pushes hit.
func TestWritersRaceWithPruning(t *testing.T) {
	ctx := context.Background()
	d, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 400 {
				p := fmt.Sprintf("uploads/%d-%d", g, i)
				w, err := d.Writer(ctx, p)
				if err != nil {
					errs <- err
					return
				}
				w.Write([]byte("x"))
				w.Close()
				if err := d.Delete(ctx, p); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
