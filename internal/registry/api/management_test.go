package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
	"github.com/cofferhq/coffer/internal/clocktest"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/api"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/token"
)

// mgmtVerifier accepts one management token.
type mgmtVerifier struct{ raw string }

func (v mgmtVerifier) Verify(ctx context.Context, raw, audience string) (*token.Claims, error) {
	if raw != v.raw || audience != token.AudienceManagement {
		return nil, access.ErrDenied
	}
	return &token.Claims{ObjectID: "admin-id", Kind: "user", Name: "admin"}, nil
}

type allowAll struct{}

func (allowAll) Authorize(context.Context, access.Request) error { return nil }

// TestManagementRefusesUnparsableParameters: every boolean or integer query parameter of
// the registry's management routes is parsed strictly; a value that does not parse is a
// 400 and nothing is done (?dryRun=maybe used to run a real collection).
func TestManagementRefusesUnparsableParameters(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	meta, err := registry.NewSQLMetadata(ctx, storetest.SQLiteAt(t, dir+"/metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	drv, err := filesystem.New(dir + "/blobs")
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktest.New(time.Now())
	svc := registry.New(drv, meta, registry.Options{GCGrace: time.Minute, Now: clock.Now})
	garbage := []byte("an unreferenced blob")
	d := digest.FromBytes(garbage)
	if _, err := svc.PutBlob(ctx, "gc/app", d, bytes.NewReader(garbage)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour) // past the grace period: a real collection removes it

	mux := http.NewServeMux()
	rt, err := mgmt.NewRouter(mux, mgmtVerifier{"mgmt-token"})
	if err != nil {
		t.Fatal(err)
	}
	api.MountManagement(rt, svc, allowAll{})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	call := func(method, path string) (int, string, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer mgmt-token")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		json.Unmarshal(b, &e)
		return resp.StatusCode, e.Error.Code, b
	}
	stillThere := func(when string) {
		t.Helper()
		if _, err := svc.StatBlob(ctx, "gc/app", d); err != nil {
			t.Fatalf("%s: the unreferenced blob was collected: %v", when, err)
		}
	}
	for _, path := range []string{
		"/coffer/v1/registry/gc?dryRun=maybe",
		"/coffer/v1/registry/gc?dryRun=",
		"/coffer/v1/registry/gc?dryRun=yes",
		"/coffer/v1/registry/gc?dryRun=true&dryRun=false",
	} {
		if st, code, body := call("POST", path); st != http.StatusBadRequest || code != mgmt.CodeBadParameter {
			t.Errorf("POST %s: %d %s, want 400 BadParameter", path, st, body)
		}
		stillThere("POST " + path)
	}
	for _, path := range []string{
		"/coffer/v1/registry/repositories?n=ten",
		"/coffer/v1/registry/repositories?n=-1",
		"/coffer/v1/registry/repositories?n=1&n=2",
	} {
		if st, code, body := call("GET", path); st != http.StatusBadRequest || code != mgmt.CodeBadParameter {
			t.Errorf("GET %s: %d %s, want 400 BadParameter", path, st, body)
		}
	}
	// The values that parse keep working.
	for _, v := range []string{"true", "1", "TRUE"} {
		if st, _, body := call("POST", "/coffer/v1/registry/gc?dryRun="+v); st != http.StatusOK || !bytes.Contains(body, []byte(`"dryRun":true`)) {
			t.Fatalf("dry run with %q: %d %s", v, st, body)
		}
		stillThere("dry run")
	}
	clock.Advance(time.Hour) // stillThere's checks refreshed the blob's link
	if st, _, body := call("POST", "/coffer/v1/registry/gc?dryRun=false"); st != http.StatusOK || !bytes.Contains(body, []byte(d.String())) {
		t.Fatalf("collection: %d %s", st, body)
	}
	if _, err := svc.StatBlob(ctx, "gc/app", d); registry.ErrorCode(err) != registry.CodeBlobUnknown {
		t.Fatalf("after a real collection the blob is still there: %v", err)
	}
}
