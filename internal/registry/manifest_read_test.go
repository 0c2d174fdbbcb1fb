package registry

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestManifestReadChecksDigest: a manifest whose stored bytes were replaced by another
// manifest of the same size (a copy over its file in the blob store) is refused on a pull
// by tag and by digest, never served under the original digest.
func TestManifestReadChecksDigest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	meta, err := NewSQLMetadata(ctx, storetest.SQLiteAt(t, dir+"/metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	drv, err := filesystem.New(dir + "/blobs")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{svc: New(drv, meta, Options{GCGrace: time.Hour, UploadExpiry: time.Hour}), driver: drv}
	file := func(p string) string { return filepath.Join(dir, "blobs", "data", filepath.FromSlash(p)) }

	cfg1, cfg2 := []byte(`{"c":1}`), []byte(`{"c":2}`)
	c1, c2 := f.blob(t, "app", cfg1), f.blob(t, "app", cfg2)
	prod, err := f.svc.PutManifest(ctx, "app", "prod", MediaTypeOCIManifest, imageManifest(c1, len(cfg1)))
	if err != nil {
		t.Fatal(err)
	}
	old, err := f.svc.PutManifest(ctx, "app", "old", MediaTypeOCIManifest, imageManifest(c2, len(cfg2)))
	if err != nil {
		t.Fatal(err)
	}
	oldBytes, err := os.ReadFile(file(blobPath(old.Digest)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file(blobPath(prod.Digest)), oldBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"prod", prod.Digest.String()} {
		rec, body, err := f.svc.GetManifest(ctx, "app", ref)
		if err == nil {
			t.Fatalf("GetManifest(%s) served %d bytes under %s after its file was replaced: %s", ref, len(body), rec.Digest, body)
		}
	}
	if _, _, err := f.svc.GetManifest(ctx, "app", "old"); err != nil {
		t.Fatalf("the untouched manifest: %v", err)
	}
}
