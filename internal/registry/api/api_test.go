package api_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/api"
	"github.com/cofferhq/coffer/internal/registry/conformance"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
	"github.com/cofferhq/coffer/internal/seal"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/token"
)

// testVerifier issues opaque tokens for scopes and verifies them: it stands in for the
// token service in handler tests.
type testVerifier struct {
	mu     sync.Mutex
	tokens map[string]*token.Claims
}

func (v *testVerifier) issue(scopes ...string) string {
	c := &token.Claims{ObjectID: "test-user", Kind: "user", Name: "tester"}
	for _, sc := range scopes {
		parts := strings.Split(sc, ":")
		if len(parts) < 3 {
			continue
		}
		name := strings.Join(parts[1:len(parts)-1], ":")
		c.Access = append(c.Access, token.Access{Type: parts[0], Name: name, Actions: strings.Split(parts[len(parts)-1], ",")})
	}
	b := make([]byte, 16)
	rand.Read(b)
	raw := hex.EncodeToString(b)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.tokens == nil {
		v.tokens = map[string]*token.Claims{}
	}
	v.tokens[raw] = c
	return raw
}

func (v *testVerifier) Verify(ctx context.Context, raw, audience string) (*token.Claims, error) {
	if audience != token.RegistryService {
		return nil, errors.New("wrong audience")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.tokens[raw]
	if !ok {
		return nil, errors.New("unknown token")
	}
	return c, nil
}

// denyAll is an Authorizer that refuses everything: handler tests grant only through tokens.
type denyAll struct{}

func (denyAll) Authorize(ctx context.Context, req access.Request) error {
	return fmt.Errorf("%w: %s at %s", access.ErrDenied, req.Action, req.Scope)
}

// newHandler is the /v2/ handler on svc, its tokens verified by v.
func newHandler(t *testing.T, svc *registry.Service, v authn.Verifier) *api.Handler {
	t.Helper()
	auth, err := registryauth.New(registryauth.Options{Verifier: v, Authorizer: denyAll{}})
	if err != nil {
		t.Fatal(err)
	}
	return api.New(api.Config{Service: svc, Auth: auth})
}

func newService(t *testing.T) *registry.Service {
	return newServiceWith(t, nil)
}

// newServiceWith builds a service on a temporary directory; wrap, if set, wraps the
// filesystem driver (as the seal part does).
func newServiceWith(t *testing.T, wrap func(blobstore.Driver) blobstore.Driver) *registry.Service {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db := storetest.SQLiteAt(t, dir+"/metadata.db")
	meta, err := registry.NewSQLMetadata(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	fsd, err := filesystem.New(dir + "/blobs")
	if err != nil {
		t.Fatal(err)
	}
	var drv blobstore.Driver = fsd
	if wrap != nil {
		drv = wrap(drv)
	}
	return registry.New(drv, meta, registry.Options{})
}

type fixedKeys struct{ root []byte }

func (k fixedKeys) CurrentKey(ctx context.Context) (uint32, []byte, error) { return 1, k.root, nil }
func (k fixedKeys) Key(ctx context.Context, gen uint32) ([]byte, error)    { return k.root, nil }

// TestConformanceSealed runs the suite with every byte going through the sealing driver,
// as it does in a server with encryption at rest.
func TestConformanceSealed(t *testing.T) {
	root := make([]byte, 32)
	rand.Read(root)
	v := &testVerifier{}
	svc := newServiceWith(t, func(d blobstore.Driver) blobstore.Driver { return seal.NewDriver(d, fixedKeys{root}) })
	srv := httptest.NewServer(newHandler(t, svc, v))
	defer srv.Close()
	conformance.Run(t, conformance.Target{
		URL:    srv.URL,
		Client: srv.Client(),
		Token:  func(t *testing.T, scopes ...string) string { return v.issue(scopes...) },
	})
}

func TestConformance(t *testing.T) {
	v := &testVerifier{}
	h := newHandler(t, newService(t), v)
	srv := httptest.NewServer(h)
	defer srv.Close()
	conformance.Run(t, conformance.Target{
		URL:    srv.URL,
		Client: srv.Client(),
		Token:  func(t *testing.T, scopes ...string) string { return v.issue(scopes...) },
	})
}
