package server

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
)

// TestMoveTrustDir: an earlier version's <data-dir>/trust moves into the blob store, byte
// for byte (sealed objects are bound to their path, the same in both), once.
func TestMoveTrustDir(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "trust")
	objs := map[string][]byte{"trust/aa/1": []byte("sealed one"), "trust/bb/2": bytes.Repeat([]byte{9}, 70000)}
	old, err := filesystem.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range objs {
		w, err := old.Writer(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	base, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n, err := moveTrustDir(ctx, dir, base)
	if err != nil || n != 2 {
		t.Fatalf("moved %d, %v", n, err)
	}
	for p, want := range objs {
		r, err := base.Reader(ctx, p, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if !bytes.Equal(got, want) {
			t.Fatalf("%s moved as %d bytes, want %d", p, len(got), len(want))
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the old directory is still there: %v", err)
	}
	if n, err := moveTrustDir(ctx, dir, base); err != nil || n != 0 {
		t.Fatalf("a second start moved %d, %v", n, err)
	}
}
