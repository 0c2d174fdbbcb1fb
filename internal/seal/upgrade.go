package seal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/cofferhq/coffer/internal/blobstore"
)

// upgradeSuffix names the copy the upgrade pass re-seals an object into, beside it, before
// it replaces the object. Paths ending in it are reserved and never listed.
const upgradeSuffix = ".sealupgrade"

// UpgradeReport is what an upgrade pass did.
type UpgradeReport struct {
	Examined int // committed objects looked at
	Upgraded int // re-sealed from version 1 to version 2
	Current  int // already of version 2
	Gone     int // removed or replaced while the pass ran (left as they were)
	Failed   int // could not be upgraded (logged); the object is left as it was
}

// upgradeProgressEvery is how often (in objects examined) the pass logs its progress.
const upgradeProgressEvery = 1000

// Upgrade re-seals every committed object under prefix that is of format version 1 (bound
// to no name) into version 2, bound to its path. For each one it seals a copy beside it
// (path + ".sealupgrade"), reads the copy back under the object's name and compares its
// plaintext with the original's, checks that the original is still the one it copied, and
// then moves the copy over it (an atomic replace). Objects of version 2 are skipped, so the
// pass is idempotent, and it keeps no state: interrupted, it is resumed by running it again,
// which first removes copies a crashed pass left behind.
//
// The pass must only run over content-addressed objects (the registry's blobs/), whose
// content never changes at a given path: then replacing an object by its re-sealed copy
// never changes what the path holds. An object deleted in the instant between the last
// check and the replace comes back as a file with no metadata, which the registry's
// collector removes as an orphan.
func (d *Driver) Upgrade(ctx context.Context, prefix string, log *slog.Logger) (UpgradeReport, error) {
	var rep UpgradeReport
	var paths, leftovers []string
	err := d.inner.Walk(ctx, prefix, func(info blobstore.Info) error {
		switch {
		case strings.HasSuffix(info.Path, upgradeSuffix):
			leftovers = append(leftovers, info.Path)
		case !reserved(info.Path):
			paths = append(paths, info.Path)
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("seal upgrade: list %s: %w", prefix, err)
	}
	for _, p := range leftovers {
		if err := d.inner.Delete(ctx, p); err != nil {
			return rep, fmt.Errorf("seal upgrade: remove %s left by an interrupted pass: %w", p, err)
		}
	}
	log.Info("sealed object upgrade started", "prefix", prefix, "objects", len(paths), "stale_copies_removed", len(leftovers))
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Examined++
		switch outcome, err := d.upgradeOne(ctx, p); {
		case err != nil:
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			if errors.Is(err, blobstore.ErrAccessDenied) {
				// The key is not accessible now: nothing can be upgraded; the next pass resumes.
				log.Warn("sealed object upgrade stopped: the encryption key is not accessible", "examined", rep.Examined, "upgraded", rep.Upgraded, "err", err)
				return rep, fmt.Errorf("seal upgrade: %w", err)
			}
			rep.Failed++
			log.Warn("sealed object upgrade failed; the object is left in version 1", "path", p, "err", err)
		case outcome == upgradeCurrent:
			rep.Current++
		case outcome == upgradeGone:
			rep.Gone++
		default:
			rep.Upgraded++
		}
		if rep.Examined%upgradeProgressEvery == 0 {
			log.Info("sealed object upgrade progress", "examined", rep.Examined, "of", len(paths), "upgraded", rep.Upgraded, "failed", rep.Failed)
		}
	}
	log.Info("sealed object upgrade done", "prefix", prefix, "examined", rep.Examined, "upgraded", rep.Upgraded,
		"current", rep.Current, "gone", rep.Gone, "failed", rep.Failed)
	return rep, nil
}

type upgradeOutcome int

const (
	upgradeDone upgradeOutcome = iota
	upgradeCurrent
	upgradeGone
)

// headerAt reads the header of the committed object at path.
func (d *Driver) headerAt(ctx context.Context, path string) (Header, int64, error) {
	info, err := d.inner.Stat(ctx, path)
	if err != nil {
		return Header{}, 0, err
	}
	r, err := d.inner.Reader(ctx, path, 0)
	if err != nil {
		return Header{}, 0, err
	}
	defer r.Close()
	hb := make([]byte, HeaderSize)
	if _, err := io.ReadFull(r, hb); err != nil {
		return Header{}, 0, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	h, err := ParseHeader(hb)
	return h, info.Size, err
}

func (d *Driver) upgradeOne(ctx context.Context, path string) (upgradeOutcome, error) {
	h, size, err := d.headerAt(ctx, path)
	if errors.Is(err, blobstore.ErrNotFound) {
		return upgradeGone, nil
	}
	if err != nil {
		return 0, err
	}
	if h.Bound() {
		return upgradeCurrent, nil
	}
	tmp := path + upgradeSuffix
	fail := func(err error) (upgradeOutcome, error) {
		d.inner.Delete(context.WithoutCancel(ctx), tmp)
		return 0, err
	}
	// Re-seal a copy, bound to the object's own path.
	src, err := d.reader(ctx, path, path, 0)
	if err != nil {
		return 0, err
	}
	w, err := d.writer(ctx, tmp)
	if err != nil {
		src.Close()
		return 0, err
	}
	w.c.name = []byte(path)
	orig := sha256.New()
	_, err = io.Copy(w, io.TeeReader(src, orig))
	src.Close()
	if err != nil {
		w.Cancel(ctx)
		return fail(fmt.Errorf("re-seal: %w", err))
	}
	if err := w.Commit(ctx); err != nil {
		w.Cancel(ctx)
		return fail(fmt.Errorf("re-seal: %w", err))
	}
	// Verify the copy as it will be read: under the object's name.
	cr, err := d.reader(ctx, tmp, path, 0)
	if err != nil {
		return fail(fmt.Errorf("verify the re-sealed copy: %w", err))
	}
	copied := sha256.New()
	_, err = io.Copy(copied, cr)
	cr.Close()
	if err != nil {
		return fail(fmt.Errorf("verify the re-sealed copy: %w", err))
	}
	if !bytes.Equal(orig.Sum(nil), copied.Sum(nil)) {
		return fail(fmt.Errorf("verify the re-sealed copy: its plaintext differs from the original's"))
	}
	// Replace only the object that was copied: not one written or removed meanwhile.
	now, nowSize, err := d.headerAt(ctx, path)
	if errors.Is(err, blobstore.ErrNotFound) {
		fail(nil)
		return upgradeGone, nil
	}
	if err != nil {
		return fail(err)
	}
	if now.ObjectID != h.ObjectID || nowSize != size {
		fail(nil)
		return upgradeGone, nil
	}
	if err := blobstore.Move(ctx, d.inner, tmp, path); err != nil {
		return fail(fmt.Errorf("replace with the re-sealed copy: %w", err))
	}
	return upgradeDone, nil
}
