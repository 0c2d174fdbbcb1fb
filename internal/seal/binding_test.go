package seal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
	"github.com/cofferhq/coffer/internal/seal"
)

// movesCounted counts the inner driver's renames and new objects.
type movesCounted struct {
	*filesystem.Driver
	moves, writers atomic.Int32
}

func (m *movesCounted) Move(ctx context.Context, src, dst string) error {
	m.moves.Add(1)
	return m.Driver.Move(ctx, src, dst)
}

func (m *movesCounted) Writer(ctx context.Context, path string) (blobstore.Writer, error) {
	m.writers.Add(1)
	return m.Driver.Writer(ctx, path)
}

func readAll(t *testing.T, d blobstore.Driver, path string, at int64) ([]byte, error) {
	t.Helper()
	r, err := d.Reader(context.Background(), path, at)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func put(t *testing.T, d blobstore.Driver, path string, data []byte, bind string) {
	t.Helper()
	ctx := context.Background()
	w, err := d.Writer(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if bind != "" {
		if err := w.(seal.Binder).Bind(bind); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestBindAndMove: an object bound to the path it is moved to is renamed; one bound to
// the path it was written at is re-sealed for its new path; either way it reads at the new
// path only.
func TestBindAndMove(t *testing.T) {
	ctx := context.Background()
	fsd, _ := newFS(t)
	inner := &movesCounted{Driver: fsd}
	d := seal.NewDriver(inner, newKeys(), seal.WithSegmentSize(1000))
	data := make([]byte, 3500)
	rand.Read(data)

	put(t, d, "uploads/1", data, "blobs/x")
	if _, err := readAll(t, d, "uploads/1", 0); !errors.Is(err, seal.ErrAuth) {
		t.Fatalf("an object bound to blobs/x read at uploads/1: %v", err)
	}
	w0 := inner.writers.Load()
	if err := d.Move(ctx, "uploads/1", "blobs/x"); err != nil {
		t.Fatal(err)
	}
	if inner.moves.Load() != 1 || inner.writers.Load() != w0 {
		t.Fatalf("a move to the bound name: %d renames, %d new objects; want a rename", inner.moves.Load(), inner.writers.Load()-w0)
	}
	if got, err := readAll(t, d, "blobs/x", 1200); err != nil || !bytes.Equal(got, data[1200:]) {
		t.Fatalf("after the move: %v", err)
	}

	put(t, d, "uploads/2", data, "")
	w0 = inner.writers.Load()
	if err := d.Move(ctx, "uploads/2", "blobs/y"); err != nil {
		t.Fatal(err)
	}
	if inner.writers.Load() != w0+1 {
		t.Fatalf("a move of an object bound to its old path: %d new objects, want a re-sealed copy", inner.writers.Load()-w0)
	}
	if got, err := readAll(t, d, "blobs/y", 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after the re-sealing move: %v", err)
	}
	if _, err := d.Stat(ctx, "uploads/2"); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("the source after a move: %v", err)
	}
	// An object bound to neither path is not moved.
	put(t, d, "uploads/3", data, "blobs/z")
	if err := d.Move(ctx, "uploads/3", "blobs/w"); !errors.Is(err, seal.ErrAuth) {
		t.Fatalf("moving an object bound elsewhere: %v", err)
	}
}

// writeV1 stores a version 1 object (as earlier builds wrote) straight into the inner
// driver.
func writeV1(t *testing.T, inner blobstore.Driver, k *keys, path string, data []byte) {
	t.Helper()
	ctx := context.Background()
	_, root, _ := k.CurrentKey(ctx)
	sealed, err := seal.Seal(rand.Reader, root, 1, 1000, data)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := inner.Writer(ctx, path)
	w.Write(sealed)
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func version(t *testing.T, dir, path string) byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "data", filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	return b[6]
}

// TestUpgrade: version 1 objects still read; the upgrade pass re-seals them in version 2
// bound to their paths, leaves version 2 objects alone, removes what an interrupted pass
// left, and does nothing the second time.
func TestUpgrade(t *testing.T) {
	ctx := context.Background()
	inner, dir := newFS(t)
	k := newKeys()
	d := seal.NewDriver(inner, k, seal.WithSegmentSize(1000))
	content := map[string][]byte{}
	for i, p := range []string{"blobs/a", "blobs/b", "blobs/empty"} {
		content[p] = make([]byte, 2500*(2-i))
		rand.Read(content[p])
		writeV1(t, inner, k, p, content[p])
	}
	content["blobs/new"] = []byte("already version 2")
	put(t, d, "blobs/new", content["blobs/new"], "")
	writeV1(t, inner, k, "uploads/u", []byte("not under the prefix"))
	// What a pass that crashed left behind.
	lw, _ := inner.Writer(ctx, "blobs/a.sealupgrade")
	lw.Write([]byte("half a copy"))
	lw.Commit(ctx)

	// Version 1 objects read, anywhere (they bind no name).
	if got, err := readAll(t, d, "blobs/a", 100); err != nil || !bytes.Equal(got, content["blobs/a"][100:]) {
		t.Fatalf("a version 1 object: %v", err)
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rep, err := d.Upgrade(ctx, "blobs/", log)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Examined != 4 || rep.Upgraded != 3 || rep.Current != 1 || rep.Failed != 0 {
		t.Fatalf("first pass: %+v", rep)
	}
	for p, want := range content {
		if v := version(t, dir, p); v != 2 {
			t.Errorf("%s: version %d after the pass", p, v)
		}
		if got, err := readAll(t, d, p, 0); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s after the pass: %v", p, err)
		}
	}
	if v := version(t, dir, "uploads/u"); v != 1 {
		t.Errorf("an object outside the prefix was upgraded")
	}
	var listed []string
	inner.Walk(ctx, "blobs/", func(i blobstore.Info) error { listed = append(listed, i.Path); return nil })
	if len(listed) != 4 {
		t.Errorf("inner objects after the pass: %v", listed)
	}
	// Now bound: a swap is detected.
	fa, _ := os.ReadFile(filepath.Join(dir, "data", "blobs", "a"))
	fb, _ := os.ReadFile(filepath.Join(dir, "data", "blobs", "b"))
	os.WriteFile(filepath.Join(dir, "data", "blobs", "b"), fa, 0o600)
	if _, err := readAll(t, d, "blobs/b", 0); !errors.Is(err, seal.ErrAuth) {
		t.Fatalf("an upgraded object put in another's place: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "data", "blobs", "b"), fb, 0o600)

	rep, err = d.Upgrade(ctx, "blobs/", log)
	if err != nil || rep.Upgraded != 0 || rep.Current != 4 {
		t.Fatalf("second pass: %+v, %v", rep, err)
	}
}

// TestRefuseVersion1: a store that holds no version 1 object any more can refuse them, so
// an old object cannot be put in a bound one's place.
func TestRefuseVersion1(t *testing.T) {
	inner, _ := newFS(t)
	k := newKeys()
	writeV1(t, inner, k, "old", []byte("sealed by an earlier build"))
	d := seal.NewDriver(inner, k, seal.RefuseVersion1())
	if _, err := readAll(t, d, "old", 0); !errors.Is(err, seal.ErrAuth) {
		t.Fatalf("a version 1 object with RefuseVersion1: %v", err)
	}
	put(t, d, "new", []byte("version 2"), "")
	if got, err := readAll(t, d, "new", 0); err != nil || string(got) != "version 2" {
		t.Fatalf("a version 2 object: %q %v", got, err)
	}
}

// TestUpgradeStopsWithoutKey: with the key revoked the pass stops at once with the key's
// error (rather than failing every object), and the next pass does the work.
func TestUpgradeStopsWithoutKey(t *testing.T) {
	ctx := context.Background()
	inner, dir := newFS(t)
	k := newKeys()
	d := seal.NewDriver(inner, k)
	for _, p := range []string{"blobs/a", "blobs/b"} {
		writeV1(t, inner, k, p, []byte(p))
	}
	k.revoke(seal.ErrKeyUnavailable)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rep, err := d.Upgrade(ctx, "blobs/", log)
	if !errors.Is(err, seal.ErrKeyUnavailable) || rep.Examined != 1 || rep.Failed != 0 {
		t.Fatalf("pass without the key: %+v, %v", rep, err)
	}
	k.revoke(nil)
	if rep, err := d.Upgrade(ctx, "blobs/", log); err != nil || rep.Upgraded != 2 {
		t.Fatalf("pass with the key back: %+v, %v", rep, err)
	}
	if v := version(t, dir, "blobs/b"); v != 2 {
		t.Fatalf("version %d", v)
	}
}
