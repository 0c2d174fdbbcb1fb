// Package filesystem is the default blobstore.Driver: objects are files under one root
// directory.
//
// Layout under the root:
//
//	data/<path>      committed objects, exactly the bytes written
//	partial/<path>   objects being written (uncommitted); kept across Close for ResumeWriter
//
// Durability: Commit flushes the partial file, renames it into data/ and flushes the
// rename (and every directory it had to create), so a committed object survives a crash of
// the process or the machine. Concurrent commits are group-committed (commit.go): on Linux
// a batch of them costs two syncfs(2) calls whatever its size. Move renames within data/
// and fsyncs both directories; concurrent fsyncs of one directory are shared (dirsync.go).
// Each caller waits for flushes that began after its own step. Nothing under partial/ is
// ever visible to Reader, Stat or Walk, so a crash in the middle of a write leaves no
// half-written object visible.
package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/durable"
)

// Driver stores objects as files under a root directory.
type Driver struct {
	root    string
	syncs   *dirSyncer
	commits *committer
}

// New returns a driver rooted at dir, creating it (mode 0700) if needed.
func New(dir string) (*Driver, error) {
	for _, d := range []string{dir, filepath.Join(dir, "data"), filepath.Join(dir, "partial")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create blob directory %s: %w", d, err)
		}
	}
	syncFS, err := fsSyncer(dir)
	if err != nil {
		return nil, fmt.Errorf("open blob directory %s: %w", dir, err)
	}
	syncs := newDirSyncer()
	return &Driver{root: dir, syncs: syncs, commits: &committer{
		syncFS: syncFS, syncFile: (*os.File).Sync, syncDir: syncs.sync}}, nil
}

var (
	_ blobstore.Resumer     = (*Driver)(nil)
	_ blobstore.Mover       = (*Driver)(nil)
	_ blobstore.CommitterAt = (*writer)(nil)
)

// clean validates an object path (blobstore.CheckPath).
func clean(p string) (string, error) {
	if err := blobstore.CheckPath(p); err != nil {
		return "", err
	}
	return p, nil
}

func (d *Driver) dataPath(p string) string {
	return filepath.Join(d.root, "data", filepath.FromSlash(p))
}
func (d *Driver) partialPath(p string) string {
	return filepath.Join(d.root, "partial", filepath.FromSlash(p))
}

// retryMissingDir runs fn again when it fails because a directory vanished: Delete prunes
// empty directories, which may race with a writer creating an entry in one. os.MkdirAll
// reports such a race as "file exists" (its mkdir found the directory, which was pruned
// before it checked what it found), so that is retried too.
func retryMissingDir(fn func() error) error {
	var err error
	for range 10 {
		if err = fn(); err == nil || !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return err
}

// syncDirIfPresent fsyncs dir, tolerating its removal by a concurrent prune (an empty
// directory that is gone needs no flushing of its entries).
func (d *Driver) syncDirIfPresent(dir string) error {
	if err := d.syncs.sync(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// mkdirAll creates dir and its missing parents, fsyncing each parent whose entries changed,
// so a later rename into dir survives a crash.
func mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return durable.SyncDir(parent)
}

// Writer starts a new object at p, discarding any uncommitted bytes there.
func (d *Driver) Writer(ctx context.Context, p string) (blobstore.Writer, error) {
	p, err := clean(p)
	if err != nil {
		return nil, err
	}
	pp := d.partialPath(p)
	var f *os.File
	err = retryMissingDir(func() error {
		// The directory usually exists (partial/uploads/ for every upload): open first,
		// create the directory only when the open says it is missing.
		var err error
		if f, err = os.OpenFile(pp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600); !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(pp), 0o700); err != nil {
			return err
		}
		f, err = os.OpenFile(pp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("blobstore: create %s: %w", p, err)
	}
	return &writer{d: d, path: p, f: f}, nil
}

// ResumeWriter reopens the uncommitted object at p, positioned at its end.
func (d *Driver) ResumeWriter(ctx context.Context, p string) (blobstore.Writer, error) {
	p, err := clean(p)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(d.partialPath(p), os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("resume %s: %w", p, blobstore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blobstore: resume %s: %w", p, err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blobstore: resume %s: %w", p, err)
	}
	return &writer{d: d, path: p, f: f, size: size}, nil
}

// Reader opens the committed object at p from offset.
func (d *Driver) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	p, err := clean(p)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(d.dataPath(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", p, blobstore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blobstore: read %s: %w", p, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blobstore: read %s: %w", p, err)
	}
	if offset < 0 || offset > fi.Size() {
		f.Close()
		return nil, fmt.Errorf("blobstore: read %s: offset %d outside object of %d bytes", p, offset, fi.Size())
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("blobstore: read %s: %w", p, err)
		}
	}
	return &fileReader{File: f, size: fi.Size()}, nil
}

// fileReader is an open object that knows its size (blobstore.Sizer).
type fileReader struct {
	*os.File
	size int64
}

func (r *fileReader) ObjectSize() int64 { return r.size }

// Stat describes the committed object at p.
func (d *Driver) Stat(ctx context.Context, p string) (blobstore.Info, error) {
	p, err := clean(p)
	if err != nil {
		return blobstore.Info{}, err
	}
	fi, err := os.Stat(d.dataPath(p))
	if errors.Is(err, fs.ErrNotExist) {
		return blobstore.Info{}, fmt.Errorf("stat %s: %w", p, blobstore.ErrNotFound)
	}
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("blobstore: stat %s: %w", p, err)
	}
	if fi.IsDir() {
		return blobstore.Info{}, fmt.Errorf("stat %s: %w", p, blobstore.ErrNotFound)
	}
	return blobstore.Info{Path: p, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Move renames the committed object at src to dst and makes the rename durable.
func (d *Driver) Move(ctx context.Context, src, dst string) error {
	src, err := clean(src)
	if err != nil {
		return err
	}
	dst, err = clean(dst)
	if err != nil {
		return err
	}
	sp, dp := d.dataPath(src), d.dataPath(dst)
	if fi, err := os.Stat(sp); errors.Is(err, fs.ErrNotExist) || (err == nil && fi.IsDir()) {
		return fmt.Errorf("move %s: %w", src, blobstore.ErrNotFound)
	}
	err = retryMissingDir(func() error {
		if err := mkdirAll(filepath.Dir(dp)); err != nil {
			return err
		}
		if err := os.Rename(sp, dp); err != nil {
			if _, serr := os.Stat(sp); errors.Is(serr, fs.ErrNotExist) {
				return fmt.Errorf("%w: %w", blobstore.ErrNotFound, serr)
			}
			return err
		}
		return nil
	})
	if errors.Is(err, blobstore.ErrNotFound) {
		return fmt.Errorf("move %s: %w", src, blobstore.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("blobstore: move %s to %s: %w", src, dst, err)
	}
	if err := d.syncs.sync(filepath.Dir(dp)); err != nil {
		return fmt.Errorf("blobstore: move %s to %s: %w", src, dst, err)
	}
	if filepath.Dir(sp) != filepath.Dir(dp) {
		if err := d.syncDirIfPresent(filepath.Dir(sp)); err != nil {
			return fmt.Errorf("blobstore: move %s to %s: %w", src, dst, err)
		}
	}
	return nil
}

// Delete removes the object at p, committed or not.
func (d *Driver) Delete(ctx context.Context, p string) error {
	p, err := clean(p)
	if err != nil {
		return err
	}
	var errs []error
	for _, top := range []string{"data", "partial"} {
		f := filepath.Join(d.root, top, filepath.FromSlash(p))
		err := os.Remove(f)
		if err == nil {
			// Only a removal can have emptied a directory; deleting what is not there
			// (the seal layer's resume state, mostly) costs one failed unlink.
			d.pruneEmpty(filepath.Dir(f), filepath.Join(d.root, top))
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			if fi, serr := os.Stat(f); serr == nil && fi.IsDir() {
				continue // a directory is not an object
			}
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("blobstore: delete %s: %w", p, errors.Join(errs...))
	}
	return nil
}

// pruneEmpty removes empty directories from dir up to (not including) stop and the
// directories right under stop (partial/uploads/, data/blobs/, kept for the next object
// rather than removed and created again whenever they empty). Failures are harmless (a
// concurrent writer may just have created an entry).
func (d *Driver) pruneEmpty(dir, stop string) {
	for dir != stop && filepath.Dir(dir) != stop && strings.HasPrefix(dir, stop) {
		if err := os.Remove(dir); err != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

// Walk calls fn for every committed object whose path starts with prefix, in lexical order.
func (d *Driver) Walk(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	base := filepath.Join(d.root, "data")
	start := base
	if dir := path.Dir(prefix); prefix != "" && dir != "." {
		if _, err := clean(dir); err != nil {
			return err
		}
		start = filepath.Join(base, filepath.FromSlash(dir))
	}
	err := filepath.WalkDir(start, func(fp string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, rerr := filepath.Rel(base, fp)
		if rerr != nil {
			return rerr
		}
		rel = filepath.ToSlash(rel)
		if de.IsDir() {
			if rel != "." && !strings.HasPrefix(rel+"/", prefix) && !strings.HasPrefix(prefix, rel+"/") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(rel, prefix) {
			return nil
		}
		fi, ierr := de.Info()
		if ierr != nil {
			if errors.Is(ierr, fs.ErrNotExist) {
				return nil // deleted while walking
			}
			return ierr
		}
		return fn(blobstore.Info{Path: rel, Size: fi.Size(), ModTime: fi.ModTime()})
	})
	if err != nil {
		return fmt.Errorf("blobstore: walk %q: %w", prefix, err)
	}
	return nil
}

type writer struct {
	d      *Driver
	path   string
	f      *os.File
	size   int64
	closed bool
}

func (w *writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, fmt.Errorf("blobstore: write %s: writer closed", w.path)
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	return n, err
}

func (w *writer) Size() int64 { return w.size }

func (w *writer) Commit(ctx context.Context) error { return w.CommitAt(ctx, w.path) }

// CommitAt commits the object at dst instead of the path it was written for (a rename of
// the partial file into data/dst), so an upload needs no Move.
func (w *writer) CommitAt(ctx context.Context, dst string) error {
	dst, err := clean(dst)
	if err != nil {
		return err
	}
	if w.closed {
		return fmt.Errorf("blobstore: commit %s: writer closed", w.path)
	}
	w.closed = true
	pp := w.f.Name()
	if err := w.d.commits.commit(w.f, w.d.dataPath(dst)); err != nil {
		return fmt.Errorf("blobstore: commit %s: %w", w.path, err)
	}
	w.d.pruneEmpty(filepath.Dir(pp), filepath.Join(w.d.root, "partial"))
	return nil
}

func (w *writer) Cancel(ctx context.Context) error {
	if !w.closed {
		w.closed = true
		w.f.Close()
	}
	if err := os.Remove(w.d.partialPath(w.path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blobstore: cancel %s: %w", w.path, err)
	}
	w.d.pruneEmpty(filepath.Dir(w.d.partialPath(w.path)), filepath.Join(w.d.root, "partial"))
	return nil
}

func (w *writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	return w.f.Close()
}
