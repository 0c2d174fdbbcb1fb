package api_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/seal"
)

// revocableKeys is a key source whose key-encryption key can be taken away, as the
// keyring refuses when the registry's identity loses access to its key.
type revocableKeys struct {
	root    []byte
	revoked atomic.Bool
}

const revokedCause = "cannot use key https://vault.test/keys/registry: access denied to identity reg-id: restore its get, wrapKey and unwrapKey access"

func (k *revocableKeys) err() error {
	return fmt.Errorf("%w: %s", seal.ErrKeyUnavailable, revokedCause)
}

func (k *revocableKeys) CurrentKey(ctx context.Context) (uint32, []byte, error) {
	if k.revoked.Load() {
		return 0, nil, k.err()
	}
	return 1, k.root, nil
}

func (k *revocableKeys) Key(ctx context.Context, gen uint32) ([]byte, error) {
	if k.revoked.Load() {
		return nil, k.err()
	}
	return k.root, nil
}

// TestPushWhileKeyRevokedIsDenied: while the registry's key is not accessible, every way
// of pushing answers 403 DENIED with the cause, as pulls do (docs/encryption.md).
func TestPushWhileKeyRevokedIsDenied(t *testing.T) {
	const repo = "revoked/app"
	keys := &revocableKeys{root: make([]byte, 32)}
	rand.Read(keys.root)
	svc := newServiceWith(t, func(d blobstore.Driver) blobstore.Driver { return seal.NewDriver(d, keys) })
	c := newV2(t, svc, repo)
	old := c.blob(repo, []byte("pushed before the revocation"))
	// A session opened before the revocation, with a first chunk.
	a := c.do("POST", "/v2/"+repo+"/blobs/uploads/", nil)
	if a.status != http.StatusAccepted {
		t.Fatalf("start upload: %s", a)
	}
	open := a.header.Get("Location")
	if a = c.do("PATCH", open, []byte("first chunk")); a.status != http.StatusAccepted {
		t.Fatalf("first chunk: %s", a)
	}
	keys.revoked.Store(true)

	pull := c.do("GET", "/v2/"+repo+"/blobs/"+old.String(), nil)
	if pull.status != http.StatusForbidden || pull.code() != "DENIED" || !strings.Contains(string(pull.body), revokedCause) {
		t.Fatalf("pull while revoked: %s", pull)
	}
	content := []byte("pushed while the key is revoked")
	d := digest.FromBytes(content)
	pushes := map[string]func() answer{
		"monolithic POST": func() answer { return c.do("POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), content) },
		"PATCH chunk": func() answer {
			a := c.do("POST", "/v2/"+repo+"/blobs/uploads/", nil)
			if a.status != http.StatusAccepted {
				return a
			}
			return c.do("PATCH", a.header.Get("Location"), content)
		},
		"PUT with the last chunk": func() answer {
			a := c.do("POST", "/v2/"+repo+"/blobs/uploads/", nil)
			if a.status != http.StatusAccepted {
				return a
			}
			return c.do("PUT", a.header.Get("Location")+"?digest="+d.String(), content)
		},
		"PATCH on a session opened before": func() answer { return c.do("PATCH", open, []byte("second chunk")) },
		"PUT manifest": func() answer {
			return c.manifest(repo, "v1", registry.MediaTypeOCIManifest, ociManifest(desc(ociConfig, old, len("pushed before the revocation"))))
		},
	}
	for name, push := range pushes {
		t.Run(name, func(t *testing.T) {
			a := push()
			if a.status != http.StatusForbidden || a.code() != "DENIED" || !strings.Contains(string(a.body), revokedCause) {
				t.Fatalf("push while revoked: %s, want 403 DENIED with %q", a, revokedCause)
			}
		})
	}
	keys.revoked.Store(false)
	if got := c.blob(repo, content); got != d {
		t.Fatal("push after the key came back")
	}
}
