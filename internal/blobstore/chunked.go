package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// ChunkPrefix is where Resumable keeps the chunks of unfinished uploads. Paths under it are
// reserved: Walk does not show them and the other methods refuse them.
const ChunkPrefix = ".chunks/"

// Resumable returns d if it is a Resumer, and otherwise d with uploads that span requests
// stored as chunk objects: each writer (Writer, then each ResumeWriter) writes one chunk,
// committed on Close, so an upload survives the request and the process; Commit composes the
// chunks into the object (in the store if d is a Composer) and removes them. The chunks are
// ordinary committed objects of d under ChunkPrefix, so whatever d guarantees of them (a
// sealing driver above sees to it that they hold no plaintext) holds of an upload.
func Resumable(d Driver) Resumer {
	if r, ok := d.(Resumer); ok {
		return r
	}
	return &chunked{inner: d}
}

type chunked struct{ inner Driver }

func chunkDir(p string) string           { return ChunkPrefix + p + "/" }
func chunkPath(p string, seq int) string { return fmt.Sprintf("%s%s/%08d", ChunkPrefix, p, seq) }

func checkNotReserved(p string) error {
	if strings.HasPrefix(p, ChunkPrefix) {
		return fmt.Errorf("blobstore: object paths under %q are reserved", ChunkPrefix)
	}
	return nil
}

// chunks lists the chunks of the upload at p, in order, with their sequence numbers.
func (c *chunked) chunks(ctx context.Context, p string) ([]Info, []int, error) {
	dir := chunkDir(p)
	type chunk struct {
		info Info
		seq  int
	}
	var found []chunk
	err := c.inner.Walk(ctx, dir, func(info Info) error {
		rest := strings.TrimPrefix(info.Path, dir)
		seq, err := strconv.Atoi(rest)
		if err != nil || len(rest) != 8 {
			return nil // another upload's chunk, at a path below p
		}
		found = append(found, chunk{info, seq})
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	sort.Slice(found, func(i, j int) bool { return found[i].seq < found[j].seq })
	infos, seqs := make([]Info, len(found)), make([]int, len(found))
	for i, f := range found {
		infos[i], seqs[i] = f.info, f.seq
	}
	return infos, seqs, nil
}

func (c *chunked) dropChunks(ctx context.Context, p string) error {
	infos, _, err := c.chunks(ctx, p)
	if err != nil {
		return err
	}
	var errs []error
	for _, info := range infos {
		if err := c.inner.Delete(ctx, info.Path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *chunked) Writer(ctx context.Context, p string) (Writer, error) {
	if err := checkNotReserved(p); err != nil {
		return nil, err
	}
	if err := c.dropChunks(ctx, p); err != nil {
		return nil, fmt.Errorf("blobstore: discard the earlier upload at %s: %w", p, err)
	}
	iw, err := c.inner.Writer(ctx, chunkPath(p, 0))
	if err != nil {
		return nil, err
	}
	return &chunkWriter{c: c, ctx: ctx, path: p, w: iw}, nil
}

func (c *chunked) ResumeWriter(ctx context.Context, p string) (Writer, error) {
	if err := checkNotReserved(p); err != nil {
		return nil, err
	}
	infos, seqs, err := c.chunks(ctx, p)
	if err != nil {
		return nil, err
	}
	if len(infos) == 0 {
		return nil, fmt.Errorf("resume %s: %w", p, ErrNotFound)
	}
	var base int64
	for _, info := range infos {
		base += info.Size
	}
	seq := seqs[len(seqs)-1] + 1
	iw, err := c.inner.Writer(ctx, chunkPath(p, seq))
	if err != nil {
		return nil, err
	}
	return &chunkWriter{c: c, ctx: ctx, path: p, seq: seq, base: base, w: iw}, nil
}

func (c *chunked) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	if err := checkNotReserved(p); err != nil {
		return nil, err
	}
	return c.inner.Reader(ctx, p, offset)
}

func (c *chunked) Stat(ctx context.Context, p string) (Info, error) {
	if err := checkNotReserved(p); err != nil {
		return Info{}, err
	}
	return c.inner.Stat(ctx, p)
}

func (c *chunked) Delete(ctx context.Context, p string) error {
	if err := checkNotReserved(p); err != nil {
		return err
	}
	return errors.Join(c.inner.Delete(ctx, p), c.dropChunks(ctx, p))
}

func (c *chunked) Walk(ctx context.Context, prefix string, fn func(Info) error) error {
	return c.inner.Walk(ctx, prefix, func(info Info) error {
		if strings.HasPrefix(info.Path, ChunkPrefix) {
			return nil
		}
		return fn(info)
	})
}

// Copy copies inside the inner store when it can.
func (c *chunked) Copy(ctx context.Context, src, dst string) error {
	if err := errors.Join(checkNotReserved(src), checkNotReserved(dst)); err != nil {
		return err
	}
	return Copy(ctx, c.inner, src, dst)
}

// chunkWriter writes chunk seq of the upload at path, after base bytes in earlier chunks.
type chunkWriter struct {
	c    *chunked
	ctx  context.Context
	path string
	seq  int
	base int64
	w    Writer
	done bool
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("blobstore: write %s: writer closed", w.path)
	}
	return w.w.Write(p)
}

func (w *chunkWriter) Size() int64 { return w.base + w.w.Size() }

// Close commits the chunk, under a context that the end of the request that wrote it
// (a client gone away) does not cancel: what arrived is kept for ResumeWriter.
func (w *chunkWriter) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	ctx := context.WithoutCancel(w.ctx)
	if w.seq > 0 && w.w.Size() == 0 {
		return w.w.Cancel(ctx) // the earlier chunks already record the upload
	}
	if err := w.w.Commit(ctx); err != nil {
		return fmt.Errorf("blobstore: keep the upload at %s: %w", w.path, err)
	}
	return nil
}

func (w *chunkWriter) Cancel(ctx context.Context) error {
	w.done = true
	return errors.Join(w.w.Cancel(ctx), w.c.dropChunks(ctx, w.path))
}

func (w *chunkWriter) Commit(ctx context.Context) error { return w.CommitAt(ctx, w.path) }

// CommitAt makes the upload's bytes an object at dst: the one chunk itself if there is only
// this one, otherwise the chunks composed, and removes the chunks.
func (w *chunkWriter) CommitAt(ctx context.Context, dst string) error {
	if w.done {
		return fmt.Errorf("blobstore: commit %s: writer closed", w.path)
	}
	if err := checkNotReserved(dst); err != nil {
		return err
	}
	w.done = true
	if w.seq == 0 {
		// Everything is in this writer: commit it at dst, directly when it can.
		if err := commitAt(ctx, w.c.inner, w.w, chunkPath(w.path, 0), dst); err != nil {
			return fmt.Errorf("blobstore: commit %s: %w", w.path, err)
		}
		return nil
	}
	if w.w.Size() > 0 {
		if err := w.w.Commit(ctx); err != nil {
			return fmt.Errorf("blobstore: commit %s: %w", w.path, err)
		}
	} else if err := w.w.Cancel(ctx); err != nil {
		return fmt.Errorf("blobstore: commit %s: %w", w.path, err)
	}
	infos, _, err := w.c.chunks(ctx, w.path)
	if err != nil {
		return fmt.Errorf("blobstore: commit %s: %w", w.path, err)
	}
	if err := w.c.compose(ctx, w.path, dst, infos); err != nil {
		return fmt.Errorf("blobstore: commit %s: %w", w.path, err)
	}
	if err := w.c.dropChunks(ctx, w.path); err != nil {
		return fmt.Errorf("blobstore: commit %s: remove the upload's chunks: %w", w.path, err)
	}
	return nil
}

// commitAt commits iw (opened at at) so that its object is visible at dst.
func commitAt(ctx context.Context, d Driver, iw Writer, at, dst string) error {
	if ca, ok := iw.(CommitterAt); ok {
		return ca.CommitAt(ctx, dst)
	}
	if err := iw.Commit(ctx); err != nil {
		return err
	}
	if at == dst {
		return nil
	}
	return Move(ctx, d, at, dst)
}

// compose concatenates the chunks into dst: in the store if it can, otherwise by copying
// their bytes into a new object.
func (c *chunked) compose(ctx context.Context, p, dst string, infos []Info) error {
	if len(infos) == 1 {
		return Move(ctx, c.inner, infos[0].Path, dst)
	}
	if cm, ok := c.inner.(Composer); ok {
		err := cm.Compose(ctx, dst, infos)
		if !errors.Is(err, ErrNotComposable) {
			return err
		}
	}
	at := ChunkPrefix + p + "/composed"
	w, err := c.inner.Writer(ctx, at)
	if err != nil {
		return err
	}
	for _, info := range infos {
		r, err := c.inner.Reader(ctx, info.Path, 0)
		if err != nil {
			w.Cancel(ctx)
			return err
		}
		_, err = io.Copy(w, r)
		r.Close()
		if err != nil {
			w.Cancel(ctx)
			return err
		}
	}
	return commitAt(ctx, c.inner, w, at, dst)
}
