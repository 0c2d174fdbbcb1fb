package filesystem

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// committer group-commits writers' commits. A commit is three steps, each of which must be
// on disk before the next: the object's bytes, its rename from partial/ into data/, and the
// directory entry the rename made. Done one commit at a time that is a flush of the file and
// one of its directory per object, and the objects of concurrent uploads land in different
// directories (blobs/sha256/<2 hex>/), so the directory syncer (dirsync.go) rarely gets to
// share. The committer takes every commit waiting when it starts a round and does each step
// for the whole batch at once: one syncfs(2) for all the batch's bytes, the renames, one
// syncfs for all their directory entries — and that second syncfs is also the first of the
// next batch (run), so under load a batch costs one syncfs. Where syncfs is not available
// (not Linux) it falls back to a flush per file and one per distinct directory.
//
// Each caller is answered only by a round that began after it asked, and only after its
// rename and everything before it were flushed, so an acknowledged commit survives a crash
// exactly as with flushes of its own. syncfs flushes the whole filesystem the data directory
// is on, not only Coffer's files: on a filesystem shared with write-heavy neighbours a
// round takes as long as their dirty data takes to write back.
type committer struct {
	syncFS   func() error // nil: not available
	syncFile func(*os.File) error
	syncDir  func(dir string) error

	mu      sync.Mutex
	running bool
	waiting []*commitReq
}

// commitReq is one writer's commit: its open partial file, renamed to dst.
type commitReq struct {
	f    *os.File
	dst  string
	err  error
	done chan struct{}
}

// commit flushes f, renames it to dst and flushes the rename, sharing each flush with the
// commits waiting beside it. f is closed whatever happens.
func (c *committer) commit(f *os.File, dst string) error {
	r := &commitReq{f: f, dst: dst, done: make(chan struct{})}
	c.mu.Lock()
	c.waiting = append(c.waiting, r)
	if !c.running {
		c.running = true
		go c.run()
	}
	c.mu.Unlock()
	<-r.done
	return r.err
}

// run commits batches until nobody is waiting. With syncfs the rounds overlap: one syncfs
// flushes both the directory entries of the batch renamed before it and the bytes of the
// batch that was waiting when it began, so under load each batch costs one syncfs, not
// two. Each flush still began after the step it covers (the renames were done, the files
// written and handed in), so the order — bytes, rename, entry, answer — is the same as
// with a flush of each.
func (c *committer) run() {
	if c.syncFS == nil {
		for {
			batch := c.take(nil)
			if batch == nil {
				return
			}
			c.round(batch)
			answer(batch)
		}
	}
	var renamed []*commitReq // renamed, waiting for the flush of their entries
	for {
		batch := c.take(renamed)
		if batch == nil && renamed == nil {
			return
		}
		err := c.syncFS()
		for _, r := range renamed {
			r.err = err
		}
		answer(renamed)
		renamed = nil
		if err != nil {
			for _, r := range batch {
				r.err = fmt.Errorf("flush: %w", err)
			}
		}
		for _, r := range batch {
			if cerr := r.f.Close(); cerr != nil && r.err == nil {
				r.err = cerr
			}
		}
		var failed []*commitReq
		for _, r := range batch {
			if r.err == nil {
				r.err = rename(r.f.Name(), r.dst, false)
			}
			if r.err == nil {
				renamed = append(renamed, r)
			} else {
				failed = append(failed, r)
			}
		}
		answer(failed)
	}
}

// take returns the commits waiting, or nil when there are none and nothing is pending
// (then the committer stops: the next commit starts another).
func (c *committer) take(pending []*commitReq) []*commitReq {
	c.mu.Lock()
	defer c.mu.Unlock()
	batch := c.waiting
	c.waiting = nil
	if len(batch) == 0 && len(pending) == 0 {
		c.running = false
		return nil
	}
	if len(batch) == 0 {
		return nil
	}
	return batch
}

func answer(reqs []*commitReq) {
	for _, r := range reqs {
		close(r.done)
	}
}

// round commits one batch where syncfs is not available: a flush per file, the renames,
// and a flush per distinct directory. Each request's err says how its commit ended.
func (c *committer) round(batch []*commitReq) {
	// 1. The bytes of every file.
	for _, r := range batch {
		if err := c.syncFile(r.f); err != nil {
			r.err = fmt.Errorf("flush: %w", err)
		}
	}
	for _, r := range batch {
		if err := r.f.Close(); err != nil && r.err == nil {
			r.err = err
		}
	}
	// 2. The renames, into directories made durable first.
	renamed := batch[:0:0]
	for _, r := range batch {
		if r.err != nil {
			continue
		}
		if r.err = rename(r.f.Name(), r.dst, true); r.err == nil {
			renamed = append(renamed, r)
		}
	}
	// 3. Their directory entries.
	dirErr := map[string]error{}
	for _, r := range renamed {
		dir := filepath.Dir(r.dst)
		err, done := dirErr[dir]
		if !done {
			err = c.syncDir(dir)
			dirErr[dir] = err
		}
		r.err = err
	}
}

// rename moves the partial file src to dst, creating dst's directory if needed: flushing
// each parent it changes when syncDirs, else leaving the new directories to the round's
// syncfs, which flushes them with the renames (a fresh store creates its 256 blobs/sha256/<xx>/
// directories during its first pushes; one fsync each would serialise the round).
// The rename is tried first: dst's directory usually exists already.
func rename(src, dst string, syncDirs bool) error {
	if err := os.Rename(src, dst); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return retryMissingDir(func() error {
		mkdir := mkdirAll
		if !syncDirs {
			mkdir = func(dir string) error { return os.MkdirAll(dir, 0o700) }
		}
		if err := mkdir(filepath.Dir(dst)); err != nil {
			return err
		}
		if err := os.Rename(src, dst); err != nil {
			if _, serr := os.Stat(src); errors.Is(serr, fs.ErrNotExist) {
				return fmt.Errorf("partial object vanished: %v", serr) // not retried
			}
			return err
		}
		return nil
	})
}
