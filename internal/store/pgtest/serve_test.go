package pgtest_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/store/pgtest"
)

const marker = "COFFER-PG-PLAINTEXT-MARKER-41c9"

func markedImage(t *testing.T) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	layer := make([]byte, 1<<20)
	rand.Read(layer)
	copy(layer[1000:], marker)
	img, err := mutate.AppendLayers(img, static.NewLayer(layer, types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf.Config.Labels = map[string]string{"note": marker}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestServeOnPostgres: coffer serve --metadata postgres://… on a real PostgreSQL. Every
// part's migrations run there; an image pushed with go-containerregistry pulls back
// intact (digests verified); a restart of the server on the same database finds it; and
// the database's pg_dump holds neither the content's marker nor the admin password.
func TestServeOnPostgres(t *testing.T) {
	pg := pgtest.Start(t)
	dbName := pg.NewDatabase(t)
	dataDir := t.TempDir()
	mutate := func(c *config.Server) {
		c.Metadata = pg.URL(dbName)
		c.DataDir = dataDir
	}
	inst := servertest.Start(t, mutate)
	auth := &authn.Basic{Username: "admin", Password: inst.AdminPassword}
	opts := []remote.Option{remote.WithAuth(auth), remote.WithTransport(inst.Client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
	ref, err := name.ParseReference(inst.Addr + "/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	img := markedImage(t)
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push: %v", err)
	}
	pull := func(inst *servertest.Instance) {
		t.Helper()
		ref, _ := name.ParseReference(inst.Addr + "/team/app:v1")
		opts := []remote.Option{remote.WithAuth(auth), remote.WithTransport(inst.Client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
		got, err := remote.Image(ref, opts...)
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		want, _ := img.Digest()
		if d, _ := got.Digest(); d != want {
			t.Fatalf("pulled manifest %s, pushed %s", d, want)
		}
		layers, _ := got.Layers()
		r, err := layers[0].Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r) // the digest is verified at EOF
		r.Close()
		if err != nil || !bytes.Contains(b, []byte(marker)) {
			t.Fatalf("pulled layer: %v", err)
		}
		tags, err := remote.List(ref.Context(), opts...)
		if err != nil || len(tags) != 1 || tags[0] != "v1" {
			t.Fatalf("tags: %v, %v", tags, err)
		}
	}
	pull(inst)

	// The tables are in PostgreSQL, not in a SQLite file in the data directory.
	if dump := pg.Dump(t, dbName); !bytes.Contains(dump, []byte("registry_manifests")) || !bytes.Contains(dump, []byte("team/app")) {
		t.Fatal("the registry's rows are not in the PostgreSQL database")
	}
	password := inst.AdminPassword
	inst.Stop()

	// A second start on the same database (and data directory: the vault root key and the
	// blobs live there) migrates nothing twice and serves the same content.
	again := servertest.Start(t, mutate)
	pull(again)

	dump := pg.Dump(t, dbName)
	if bytes.Contains(dump, []byte(marker)) {
		t.Fatal("the content's plaintext marker is in the database dump")
	}
	if bytes.Contains(dump, []byte(password)) {
		t.Fatal("the admin password is in the database dump")
	}
}

// TestServeDatabaseOutage: the database stops under a running server. Readiness goes false,
// a pull fails with 503 UNAVAILABLE (not a 500, not a wrong 404), and every part's
// management routes answer 503 with Retry-After (not a 500, not a 401); once the database
// is back, the same requests succeed without restarting Coffer, and nothing pushed before
// is lost.
func TestServeDatabaseOutage(t *testing.T) {
	pg := pgtest.Start(t)
	dbName := pg.NewDatabase(t)
	inst := servertest.Start(t, func(c *config.Server) { c.Metadata = pg.URL(dbName) })
	auth := &authn.Basic{Username: "admin", Password: inst.AdminPassword}
	ref, _ := name.ParseReference(inst.Addr + "/team/app:v1")
	opts := []remote.Option{remote.WithAuth(auth), remote.WithTransport(inst.Client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
	img := markedImage(t)
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push: %v", err)
	}
	// A token taken before the outage, so the pull below reaches the registry itself.
	tr, err := transport.NewWithContext(t.Context(), ref.Context().Registry, auth, inst.Client.Transport, []string{ref.Context().Scope(transport.PullScope)})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: tr}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, inst.URL+path, nil)
		req.Header.Set("Accept", string(types.OCIManifestSchema1))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}

	// A management token taken before the outage too, for the management API's routes.
	mgmtToken := inst.ManagementToken(t, inst.AdminPassword)
	// Every management route that reads the database, one per part.
	mgmtPaths := []string{
		"/coffer/v1/users", "/coffer/v1/servicePrincipals", "/coffer/v1/managedIdentities",
		"/coffer/v1/role-assignments", "/coffer/v1/tokens",
		"/coffer/v1/vaults", "/coffer/v1/audit",
		"/coffer/v1/kms/clusters",
		"/coffer/v1/registry/repositories", "/coffer/v1/registry/encryption",
		"/coffer/v1/registry/config/content-trust",
		"/coffer/v1/registry/signatures/anchors", "/coffer/v1/registry/signatures/policy",
	}
	mgmtDo := func(method, path, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, inst.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+mgmtToken)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	for _, path := range mgmtPaths {
		if resp, body := mgmtDo(http.MethodGet, path, ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s before the outage: %d %s", path, resp.StatusCode, body)
		}
	}
	// cached: some parts answer a read from memory (the encryption status, the signature
	// policy) while the token check does not need the database.
	unavailable := func(when string, cached bool) {
		t.Helper()
		for _, path := range mgmtPaths {
			resp, body := mgmtDo(http.MethodGet, path, "")
			if cached && resp.StatusCode == http.StatusOK {
				continue
			}
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "unreachable") {
				t.Errorf("GET %s %s: %d %s (Retry-After %q), want 503 with Retry-After", path, when, resp.StatusCode, body, resp.Header.Get("Retry-After"))
			}
		}
		resp, body := mgmtDo(http.MethodPost, "/coffer/v1/users", `{"name":"outage-user","password":"a long enough password 1"}`)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("POST /coffer/v1/users %s: %d %s, want 503 with Retry-After", when, resp.StatusCode, body)
		}
	}

	pg.Stop(t)
	// While the token's principal is still remembered as live (the handlers' own reads
	// fail), and once that has expired (the token check itself cannot reach the database:
	// a 503, not a 401 that would send the caller to log in again).
	unavailable("during the outage", true)
	// The Notary v1 API (docker trust) reads its metadata from the database as well.
	if resp, body := get("/v2/team/app/_trust/tuf/timestamp.json"); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "UNAVAILABLE") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("trust metadata during the outage: %d %s (Retry-After %q)", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	time.Sleep(identity.LiveTTL + 500*time.Millisecond)
	unavailable("during the outage, once the token check needs the database", false)
	resp, err := inst.Client.Get(inst.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz during the outage: %d", resp.StatusCode)
	}
	resp, body := get("/v2/team/app/manifests/v1")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "UNAVAILABLE") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("pull during the outage: %d %s (Retry-After %q)", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}

	pg.Restart(t)
	want, _ := img.Digest()
	resp, _ = get("/v2/team/app/manifests/v1")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != want.String() {
		t.Fatalf("pull after the outage: %d %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	if _, err := remote.Image(ref, opts...); err != nil {
		t.Fatalf("pull with a fresh login after the outage: %v", err)
	}
	for _, path := range mgmtPaths {
		if resp, body := mgmtDo(http.MethodGet, path, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s after the outage, same token: %d %s", path, resp.StatusCode, body)
		}
	}
	if resp, body := mgmtDo(http.MethodGet, "/coffer/v1/users/outage-user", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the user refused during the outage exists after it: %d %s", resp.StatusCode, body)
	}
}
