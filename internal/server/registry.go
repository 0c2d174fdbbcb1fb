package server

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/api"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
	"github.com/cofferhq/coffer/internal/token"
)

// registryPart holds what the server keeps of the registry part.
type registryPart struct {
	// driver is where every registry byte goes (blobs, manifests, uploads in progress):
	// the filesystem driver under <data-dir>/blobs, wrapped by wrapDriver if set.
	driver blobstore.Driver
	// wrapDriver, when set by a part mounted before the registry (the seal part), wraps
	// the base driver, e.g. in an encrypting Driver.
	wrapDriver func(ctx context.Context, base blobstore.Driver) (blobstore.Driver, error)
	service    *registry.Service
	// trust, when set (by a part mounted before the registry), serves /v2/<name>/_trust/...
	trust http.Handler
}

// registryGCGrace is how long unreferenced registry content is kept before collection.
const registryGCGrace = time.Hour

// mountRegistry wires the registry part: its services, routes and background jobs.
func (s *Server) mountRegistry(ctx context.Context) error {
	driver, err := s.registryDriver(ctx)
	if err != nil {
		return err
	}
	s.registry.driver = driver
	meta, err := registry.NewSQLMetadata(ctx, s.db)
	if err != nil {
		return fmt.Errorf("registry metadata: %w", err)
	}
	s.closers = append(s.closers, meta.Close)
	svc := registry.New(driver, meta, registry.Options{
		MaxManifestSize: s.cfg.Registry.MaxManifestSize,
		UploadExpiry:    s.cfg.Registry.UploadExpiry,
		GCGrace:         registryGCGrace,
		Log:             s.log.With("part", "registry"),
	})
	s.registry.service = svc
	auth, err := registryauth.New(registryauth.Options{
		Verifier:      s.identity.verifier,
		Authorizer:    s.access.authz,
		AnonymousPull: s.cfg.Registry.AnonymousPull,
		Log:           s.log.With("part", "registry"),
	})
	if err != nil {
		return err
	}
	s.mux.Handle("/v2/", api.New(api.Config{
		Service: svc,
		Auth:    auth,
		Trust:   s.registry.trust,
		Log:     s.log.With("part", "registry"),
	}))
	s.mountRegistryManagement(svc)
	s.background = append(s.background, func(ctx context.Context) { s.registryJobs(ctx, svc) })
	return nil
}

// registryDriver is the one place the registry's blob driver is chosen.
func (s *Server) registryDriver(ctx context.Context) (blobstore.Driver, error) {
	base, err := filesystem.New(filepath.Join(s.cfg.DataDir, "blobs"))
	if err != nil {
		return nil, err
	}
	if s.registry.wrapDriver == nil {
		return base, nil
	}
	d, err := s.registry.wrapDriver(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("registry blob store: %w", err)
	}
	return d, nil
}

// registryJobs expires idle uploads and runs the garbage collector on schedule.
func (s *Server) registryJobs(ctx context.Context, svc *registry.Service) {
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

// lazyVerifier reads the identity part's verifier at request time.
type lazyVerifier struct{ s *Server }

func (v lazyVerifier) Verify(ctx context.Context, raw, audience string) (*token.Claims, error) {
	if v.s.identity.verifier == nil {
		return nil, fmt.Errorf("the token service is not available")
	}
	return v.s.identity.verifier.Verify(ctx, raw, audience)
}

// lazyAuthorizer reads the access part's authorizer at request time.
type lazyAuthorizer struct{ s *Server }

func (a lazyAuthorizer) Authorize(ctx context.Context, req access.Request) error {
	if a.s.access.authz == nil {
		return fmt.Errorf("%w: the access service is not available", access.ErrDenied)
	}
	return a.s.access.authz.Authorize(ctx, req)
}

func (s *Server) mountRegistryManagement(svc *registry.Service) {
	api.MountManagement(s.mgmt, svc, s.access.authz)
}
