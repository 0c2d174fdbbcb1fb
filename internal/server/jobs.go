package server

import (
	"context"
	"errors"
	"time"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/console"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/seal"
	"github.com/cofferhq/coffer/internal/vault"
)

// vaultJobs runs the vault's lifecycle (rotation policies, purge of expired soft-deleted
// keys) every minute.
func (s *Server) vaultJobs(svc *vault.Service) func(context.Context) {
	return func(ctx context.Context) {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			if err := svc.RunLifecycle(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("vault lifecycle run failed", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}
}

// registryJobs expires idle uploads and runs the garbage collector on schedule.
func (s *Server) registryJobs(svc *registry.Service) func(context.Context) {
	return func(ctx context.Context) {
		expiry := time.NewTicker(min(svc.Options().UploadExpiry/2+time.Second, 10*time.Minute))
		defer expiry.Stop()
		var gc <-chan time.Time
		if s.cfg.Registry.GCInterval > 0 {
			t := time.NewTicker(s.cfg.Registry.GCInterval)
			defer t.Stop()
			gc = t.C
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-expiry.C:
				if _, err := svc.ExpireUploads(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn("expire registry uploads", "err", err)
				}
			case <-gc:
				if _, err := svc.GC(ctx, false, nil); err != nil && ctx.Err() == nil {
					s.log.Warn("registry garbage collection", "err", err)
				}
			}
		}
	}
}

// sealUpgrade re-seals, once after each start, the registry's objects still in the sealed
// format's version 1 (bound to no name) into version 2, which binds each to its digest
// (docs/seal-format.md). It is idempotent and resumable: a store with nothing left to
// upgrade costs one walk. While the key is not accessible it tries again every minute; any
// other failure is logged and waits for the next start (the objects stay readable).
func (s *Server) sealUpgrade(d *seal.Driver) func(context.Context) {
	return func(ctx context.Context) {
		log := s.log.With("part", "seal", "job", "upgrade")
		for {
			rep, err := d.Upgrade(ctx, "blobs/", log)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				if rep.Upgraded > 0 || rep.Failed > 0 {
					log.Info("sealed objects upgraded to format version 2", "upgraded", rep.Upgraded, "failed", rep.Failed, "examined", rep.Examined)
				}
				return
			}
			log.Warn("upgrade of sealed objects to format version 2 stopped", "err", err, "upgraded", rep.Upgraded)
			if !errors.Is(err, blobstore.ErrAccessDenied) {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Minute):
			}
		}
	}
}

// consoleJobs deletes the web console's expired sessions every ten minutes (an expired
// session is refused when used anyway; this only keeps the table small).
func (s *Server) consoleJobs(c *console.Console) func(context.Context) {
	return func(ctx context.Context) {
		t := time.NewTicker(10 * time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := c.SweepSessions(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn("sweep console sessions", "err", err)
				}
			}
		}
	}
}
