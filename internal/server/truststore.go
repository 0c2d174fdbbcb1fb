package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
)

// moveTrustDir moves the content-trust metadata an earlier version kept in
// <data-dir>/trust into the blob store every replica shares (base, under trust/). The
// objects are sealed and bound to their path, which is the same in both, so their bytes
// are copied as they are; the directory goes once every object is in the store. An
// interrupted move is repeated whole at the next start.
func moveTrustDir(ctx context.Context, dir string, base blobstore.Driver) (int, error) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	old, err := filesystem.New(dir)
	if err != nil {
		return 0, err
	}
	var paths []string
	if err := old.Walk(ctx, "trust/", func(i blobstore.Info) error { paths = append(paths, i.Path); return nil }); err != nil {
		return 0, fmt.Errorf("list %s: %w", dir, err)
	}
	for _, p := range paths {
		if err := copyObject(ctx, old, base, p); err != nil {
			return 0, fmt.Errorf("move the trust metadata %s into the blob store: %w", p, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return len(paths), fmt.Errorf("remove %s after moving it into the blob store: %w", filepath.Base(dir), err)
	}
	return len(paths), nil
}

func copyObject(ctx context.Context, from, to blobstore.Driver, p string) error {
	r, err := from.Reader(ctx, p, 0)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := to.Writer(ctx, p)
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := io.Copy(w, r); err != nil {
		w.Cancel(ctx)
		return err
	}
	return w.Commit(ctx)
}
