package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/blobstore"
)

// GCReport is what a garbage collection removed (or, in a dry run, would remove).
type GCReport struct {
	DryRun bool `json:"dryRun"`
	// Cutoff: content touched after it was left alone (the grace period).
	Cutoff time.Time `json:"cutoff"`
	// StaleLinks are blob links no manifest of their repository needs.
	StaleLinks int `json:"staleLinks"`
	// Blobs are blobs (and manifest contents) no repository needs any more.
	Blobs []BlobInfo `json:"blobs"`
	// BytesFreed is the sum of the removed blobs' sizes.
	BytesFreed int64 `json:"bytesFreed"`
	// OrphanFiles are stored objects with no metadata (left by a crash), removed.
	OrphanFiles int `json:"orphanFiles"`
	// ExpiredUploads are upload sessions removed for being idle too long.
	ExpiredUploads int `json:"expiredUploads"`
}

// GCProgress is reported while a collection runs.
type GCProgress struct {
	Phase string
	Done  int
	Total int
}

// collect collects garbage online, safely beside concurrent pushes and pulls:
//
//   - mark: the metadata store finds blobs that no manifest references, that are not a
//     manifest's own bytes, and that no repository linked within the grace period;
//   - sweep: each candidate's row is deleted only if it is still garbage, checked in the
//     same transaction (a manifest pushed meanwhile references it, or an upload or mount
//     meanwhile touched it, and it stays), then its file is removed under the digest's
//     lock, which uploads also take to put the file back;
//   - files with no row (a crash between storing bytes and recording them) older than the
//     grace period are removed the same way.
//
// Uploads in progress live apart from blobs and are only removed when they expire.
func (s *Service) collect(ctx context.Context, dryRun bool, progress func(GCProgress)) (GCReport, error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	if progress == nil {
		progress = func(GCProgress) {}
	}
	cutoff := s.now().Add(-s.opts.GCGrace)
	rep := GCReport{DryRun: dryRun, Cutoff: cutoff, Blobs: []BlobInfo{}}
	var err error
	if !dryRun {
		if rep.ExpiredUploads, err = s.ExpireUploads(ctx); err != nil {
			return rep, err
		}
	}
	progress(GCProgress{Phase: "links"})
	if rep.StaleLinks, err = s.meta.StaleLinks(ctx, cutoff, !dryRun); err != nil {
		return rep, err
	}
	progress(GCProgress{Phase: "mark"})
	garbage, err := s.meta.GarbageBlobs(ctx, cutoff)
	if err != nil {
		return rep, err
	}
	for i, b := range garbage {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		progress(GCProgress{Phase: "sweep", Done: i, Total: len(garbage)})
		if dryRun {
			rep.Blobs = append(rep.Blobs, b)
			rep.BytesFreed += b.Size
			continue
		}
		removed, err := s.sweep(ctx, b.Digest, cutoff)
		if err != nil {
			return rep, err
		}
		if removed {
			rep.Blobs = append(rep.Blobs, b)
			rep.BytesFreed += b.Size
		}
	}
	progress(GCProgress{Phase: "orphans"})
	n, err := s.sweepOrphans(ctx, cutoff, dryRun)
	rep.OrphanFiles = n
	if err != nil {
		return rep, err
	}
	progress(GCProgress{Phase: "done", Done: len(rep.Blobs), Total: len(rep.Blobs)})
	s.opts.Log.Info("registry garbage collection", "dry_run", dryRun, "blobs", len(rep.Blobs),
		"bytes", rep.BytesFreed, "stale_links", rep.StaleLinks, "orphans", rep.OrphanFiles, "expired_uploads", rep.ExpiredUploads)
	return rep, nil
}

func (s *Service) sweep(ctx context.Context, d digest.Digest, cutoff time.Time) (bool, error) {
	unlock, err := s.lockDigest(ctx, d)
	if err != nil {
		return false, err
	}
	defer unlock()
	ok, err := s.meta.DeleteBlobIfGarbage(ctx, d, cutoff)
	if err != nil || !ok {
		return false, err
	}
	if err := s.driver.Delete(ctx, blobPath(d)); err != nil {
		return true, fmt.Errorf("remove blob %s: %w", d, err)
	}
	return true, nil
}

// sweepOrphans removes blob files that have no metadata row and are older than cutoff.
func (s *Service) sweepOrphans(ctx context.Context, cutoff time.Time, dryRun bool) (int, error) {
	var orphans []digest.Digest
	err := s.driver.Walk(ctx, "blobs/", func(info blobstore.Info) error {
		if info.ModTime.After(cutoff) {
			return nil
		}
		parts := strings.Split(info.Path, "/") // blobs/<alg>/<xx>/<hex>
		if len(parts) != 4 {
			return nil
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[3])
		if d.Validate() != nil {
			return nil
		}
		known, err := s.meta.BlobKnown(ctx, d)
		if err != nil {
			return err
		}
		if !known {
			orphans = append(orphans, d)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if dryRun {
		return len(orphans), nil
	}
	n := 0
	for _, d := range orphans {
		unlock, err := s.lockDigest(ctx, d)
		if err != nil {
			return n, err
		}
		known, err := s.meta.BlobKnown(ctx, d)
		if err == nil && !known {
			if info, serr := s.driver.Stat(ctx, blobPath(d)); serr == nil && !info.ModTime.After(cutoff) {
				err = s.driver.Delete(ctx, blobPath(d))
				n++
			} else if serr != nil && !errors.Is(serr, blobstore.ErrNotFound) {
				err = serr
			}
		}
		unlock()
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
