package imagecrypt

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"

	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// Transport names the kind of place an image is read from or written to.
type Transport string

const (
	// OCILayout is an OCI image layout directory: oci:DIR[:TAG].
	OCILayout Transport = "oci"
	// Registry is a registry: docker://HOST/REPO:TAG or docker://HOST/REPO@DIGEST.
	Registry Transport = "docker"
	// DockerArchive is a `docker save` tarball: docker-archive:FILE (read only).
	DockerArchive Transport = "docker-archive"
)

// Ref is a parsed image reference.
type Ref struct {
	Transport Transport
	// Path is the layout directory or the archive file.
	Path string
	// Repository is the registry's host and repository (registry only).
	Repository string
	// Reference is the tag or digest ("latest" when none is given).
	Reference string
}

func (r Ref) String() string {
	switch r.Transport {
	case OCILayout:
		return "oci:" + r.Path + ":" + r.Reference
	case Registry:
		sep := ":"
		if strings.Contains(r.Reference, ":") {
			sep = "@"
		}
		return "docker://" + r.Repository + sep + r.Reference
	}
	return string(r.Transport) + ":" + r.Path
}

// ParseRef parses oci:DIR[:TAG], docker://HOST/REPO[:TAG|@DIGEST] and docker-archive:FILE.
func ParseRef(s string) (Ref, error) {
	switch {
	case strings.HasPrefix(s, "docker://"):
		rest := strings.TrimPrefix(s, "docker://")
		ref, err := registry.ParseReference(rest)
		if err != nil {
			return Ref{}, fmt.Errorf("image reference %q: %w (want docker://HOST/REPO:TAG)", s, err)
		}
		if ref.Reference == "" {
			ref.Reference = "latest"
		}
		return Ref{Transport: Registry, Repository: ref.Registry + "/" + ref.Repository, Reference: ref.Reference}, nil
	case strings.HasPrefix(s, "oci:"):
		rest := strings.TrimPrefix(s, "oci:")
		dir, tag := rest, "latest"
		// A tag follows the last colon after the last slash (DIR may hold colons only
		// before its last element).
		if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
			dir, tag = rest[:i], rest[i+1:]
		}
		if dir == "" || tag == "" {
			return Ref{}, fmt.Errorf("image reference %q: want oci:DIR[:TAG]", s)
		}
		return Ref{Transport: OCILayout, Path: filepath.Clean(dir), Reference: tag}, nil
	case strings.HasPrefix(s, "docker-archive:"):
		p := strings.TrimPrefix(s, "docker-archive:")
		if p == "" {
			return Ref{}, fmt.Errorf("image reference %q: want docker-archive:FILE", s)
		}
		return Ref{Transport: DockerArchive, Path: p}, nil
	}
	return Ref{}, fmt.Errorf("image reference %q: unknown transport (use oci:DIR[:TAG], docker://HOST/REPO:TAG or docker-archive:FILE)", s)
}

// RegistryOptions say how registries are reached.
type RegistryOptions struct {
	// HTTPClient is the client for registries (its TLS roots); nil: a default client.
	HTTPClient *http.Client
	// Credential gives the credential for a registry host; nil: the docker credential
	// store (~/.docker/config.json and its helpers).
	Credential auth.CredentialFunc
	// PlainHTTP talks HTTP instead of HTTPS (tests, local registries only).
	PlainHTTP bool
}

// open returns the target of a reference. A docker-archive is read into a temporary OCI
// layout under tmp.
func (o RegistryOptions) open(ctx context.Context, r Ref, write bool, tmp string) (oras.Target, error) {
	switch r.Transport {
	case OCILayout:
		s, err := oci.NewWithContext(ctx, r.Path)
		if err != nil {
			return nil, fmt.Errorf("open OCI layout %s: %w", r.Path, err)
		}
		return s, nil
	case Registry:
		repo, err := remote.NewRepository(r.Repository)
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", r.Repository, err)
		}
		hc := o.HTTPClient
		if hc == nil {
			hc = retry.DefaultClient
		}
		cred := o.Credential
		if cred == nil {
			store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
			if err != nil {
				return nil, fmt.Errorf("docker credential store: %w", err)
			}
			cred = credentials.Credential(store)
		}
		repo.Client = &auth.Client{Client: hc, Credential: cred, Cache: auth.NewCache()}
		repo.PlainHTTP = o.PlainHTTP
		return repo, nil
	case DockerArchive:
		if write {
			return nil, errors.New("docker-archive is a source only: an encrypted image has no Docker archive form (write oci:DIR or docker://… instead)")
		}
		return readDockerArchive(ctx, r.Path, tmp)
	}
	return nil, fmt.Errorf("unknown transport %q", r.Transport)
}
