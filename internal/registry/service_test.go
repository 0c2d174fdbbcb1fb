package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
	"github.com/cofferhq/coffer/internal/clocktest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

type fixture struct {
	svc    *Service
	driver blobstore.Resumer
	clock  *clocktest.Clock
}

func newFixture(t *testing.T, grace time.Duration) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db := storetest.SQLiteAt(t, dir+"/metadata.db")
	meta, err := NewSQLMetadata(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	drv, err := filesystem.New(dir + "/blobs")
	if err != nil {
		t.Fatal(err)
	}
	c := clocktest.New(time.Now())
	return &fixture{svc: New(drv, meta, Options{GCGrace: grace, UploadExpiry: time.Hour, Now: c.Now}), driver: drv, clock: c}
}

func (f *fixture) blob(t *testing.T, repo string, content []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(content)
	if _, err := f.svc.PutBlob(context.Background(), repo, d, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	return d
}

func imageManifest(cfg digest.Digest, cfgSize int, layers ...[]byte) []byte {
	var ls []any
	for _, l := range layers {
		ls = append(ls, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest.FromBytes(l), "size": len(l)})
	}
	if ls == nil {
		ls = []any{}
	}
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIManifest,
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfgSize},
		"layers": ls})
	return m
}

func (f *fixture) readable(t *testing.T, repo string, d digest.Digest) error {
	rc, _, err := f.svc.OpenBlob(context.Background(), repo, d, 0)
	if err != nil {
		return err
	}
	defer rc.Close()
	v := d.Verifier()
	io.Copy(v, rc)
	if !v.Verified() {
		return fmt.Errorf("blob %s: bytes do not match", d)
	}
	return nil
}

func TestGC(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, time.Hour)
	cfg := []byte(`{"c":1}`)
	layer := []byte("referenced layer")
	cd := f.blob(t, "app", cfg)
	ld := f.blob(t, "app", layer)
	m := imageManifest(cd, len(cfg), layer)
	res, err := f.svc.PutManifest(ctx, "app", "v1", MediaTypeOCIManifest, m)
	if err != nil {
		t.Fatal(err)
	}
	loose := f.blob(t, "app", []byte("never referenced"))
	// A manifest deleted: its layer becomes garbage too.
	gone := []byte("layer of a deleted manifest")
	gd := f.blob(t, "old", gone)
	f.blob(t, "old", cfg)
	m2 := imageManifest(cd, len(cfg), gone)
	res2, err := f.svc.PutManifest(ctx, "old", "x", MediaTypeOCIManifest, m2)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteManifest(ctx, "old", res2.Digest.String()); err != nil {
		t.Fatal(err)
	}
	// Within the grace period nothing goes.
	rep, err := f.svc.GC(ctx, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Blobs) != 0 || rep.StaleLinks != 0 {
		t.Fatalf("GC within the grace period removed %+v", rep)
	}
	f.clock.Advance(2 * time.Hour)
	// A dry run reports without removing.
	dry, err := f.svc.GC(ctx, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantGone := map[digest.Digest]bool{loose: true, gd: true, res2.Digest: true}
	if len(dry.Blobs) != len(wantGone) {
		t.Fatalf("dry run found %+v, want %v", dry.Blobs, wantGone)
	}
	for _, b := range dry.Blobs {
		if !wantGone[b.Digest] {
			t.Fatalf("dry run would remove %s", b.Digest)
		}
	}
	if _, err := f.driver.Stat(ctx, blobPath(loose)); err != nil {
		t.Fatalf("dry run removed a blob: %v", err)
	}
	// An orphan file (bytes stored, metadata never recorded: a crash) older than the grace.
	orphan := digest.FromBytes([]byte("orphan"))
	w, _ := f.driver.Writer(ctx, blobPath(orphan))
	w.Write([]byte("orphan"))
	w.Commit(ctx)
	f.clock.Advance(time.Hour) // the file's mtime is real time; the fake clock moves the cutoff past it

	rep, err = f.svc.GC(ctx, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Blobs) != 3 || rep.OrphanFiles != 1 || rep.BytesFreed == 0 {
		t.Fatalf("GC report %+v", rep)
	}
	for d := range wantGone {
		if _, err := f.driver.Stat(ctx, blobPath(d)); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("%s still stored after GC: %v", d, err)
		}
	}
	if _, err := f.driver.Stat(ctx, blobPath(orphan)); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatal("orphan file survived GC")
	}
	// Everything the tagged manifest needs is intact.
	for _, d := range []digest.Digest{cd, ld} {
		if err := f.readable(t, "app", d); err != nil {
			t.Fatalf("GC broke a referenced blob: %v", err)
		}
	}
	if _, body, err := f.svc.GetManifest(ctx, "app", "v1"); err != nil || !bytes.Equal(body, m) {
		t.Fatalf("GC broke the manifest: %v", err)
	}
	if _, _, err := f.svc.GetManifest(ctx, "app", res.Digest.String()); err != nil {
		t.Fatal(err)
	}
	// The stale link of the config in "old" went; "app" keeps its own.
	if _, err := f.svc.StatBlob(ctx, "old", cd); ErrorCode(err) != CodeBlobUnknown {
		t.Fatalf("stale link survived: %v", err)
	}
}

// TestGCBesideConcurrentPushes runs the collector continuously, with a 100 ms grace period,
// while clients push images; every acknowledged manifest must stay whole.
func TestGCBesideConcurrentPushes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 100*time.Millisecond)
	f.svc.opts.Now = time.Now
	stop := make(chan struct{})
	var gcWG sync.WaitGroup
	gcWG.Add(1)
	swept := 0
	go func() {
		defer gcWG.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			rep, err := f.svc.GC(ctx, false, nil)
			if err != nil {
				t.Errorf("GC: %v", err)
				return
			}
			swept += len(rep.Blobs)
		}
	}()
	type pushed struct {
		repo   string
		digest digest.Digest
		blobs  []digest.Digest
	}
	var mu sync.Mutex
	var acked []pushed
	var wg sync.WaitGroup
	shared := []byte("a layer every image shares")
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				repo := fmt.Sprintf("c/r%d", w)
				cfg := []byte(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
				own := []byte(fmt.Sprintf("layer %d/%d", w, i))
				// Garbage for the collector to sweep while pushes go on.
				junk := []byte(fmt.Sprintf("junk %d/%d", w, i))
				if _, err := f.svc.PutBlob(ctx, repo, digest.FromBytes(junk), bytes.NewReader(junk)); err != nil {
					t.Errorf("PutBlob: %v", err)
					return
				}
				for attempt := 0; ; attempt++ {
					cd := digest.FromBytes(cfg)
					var err error
					for _, c := range [][]byte{cfg, own, shared} {
						if _, err = f.svc.PutBlob(ctx, repo, digest.FromBytes(c), bytes.NewReader(c)); err != nil {
							t.Errorf("PutBlob: %v", err)
							return
						}
					}
					m := imageManifest(cd, len(cfg), own, shared)
					res, err := f.svc.PutManifest(ctx, repo, fmt.Sprintf("t%d", i), MediaTypeOCIManifest, m)
					if ErrorCode(err) == CodeManifestBlobUnknown && attempt < 1000 {
						continue // collected between upload and manifest (no grace): push again
					}
					if err != nil {
						t.Errorf("PutManifest: %v", err)
						return
					}
					mu.Lock()
					acked = append(acked, pushed{repo, res.Digest, []digest.Digest{cd, digest.FromBytes(own), digest.FromBytes(shared)}})
					mu.Unlock()
					break
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	gcWG.Wait()
	if _, err := f.svc.GC(ctx, false, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range acked {
		if _, _, err := f.svc.GetManifest(ctx, p.repo, p.digest.String()); err != nil {
			t.Fatalf("acknowledged manifest %s lost: %v", p.digest, err)
		}
		for _, d := range p.blobs {
			if err := f.readable(t, p.repo, d); err != nil {
				t.Fatalf("blob %s of acknowledged manifest %s lost: %v", d, p.digest, err)
			}
		}
	}
	if len(acked) != 60 {
		t.Fatalf("%d pushes acknowledged, want 60", len(acked))
	}
	if swept == 0 {
		t.Fatal("the collector swept nothing while pushes ran: the test did not exercise concurrency")
	}
	t.Logf("the collector swept %d blobs during the pushes", swept)
}

func TestUploadExpiry(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, time.Hour)
	u, err := f.svc.StartUpload(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AppendUpload(ctx, "app", u.ID, 0, bytes.NewReader([]byte("part"))); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(30 * time.Minute)
	if _, err := f.svc.AppendUpload(ctx, "app", u.ID, 4, bytes.NewReader([]byte("more"))); err != nil {
		t.Fatalf("an active upload expired: %v", err)
	}
	u2, _ := f.svc.StartUpload(ctx, "app")
	f.clock.Advance(61 * time.Minute)
	n, err := f.svc.ExpireUploads(ctx)
	if err != nil || n != 2 {
		t.Fatalf("ExpireUploads = %d, %v; want 2", n, err)
	}
	for _, id := range []string{u.ID, u2.ID} {
		if _, err := f.svc.UploadStatus(ctx, "app", id); ErrorCode(err) != CodeBlobUploadUnknown {
			t.Fatalf("expired upload answers %v", err)
		}
		if _, err := f.driver.ResumeWriter(ctx, uploadPath(id)); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("expired upload's bytes remain: %v", err)
		}
	}
	// Expiry is also enforced on access, before the sweeper runs.
	u3, _ := f.svc.StartUpload(ctx, "app")
	f.clock.Advance(2 * time.Hour)
	if _, err := f.svc.AppendUpload(ctx, "app", u3.ID, -1, bytes.NewReader([]byte("x"))); ErrorCode(err) != CodeBlobUploadUnknown {
		t.Fatalf("expired upload accepted a chunk: %v", err)
	}
}

func TestUploadWrongRepository(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, time.Hour)
	u, _ := f.svc.StartUpload(ctx, "a")
	if _, err := f.svc.AppendUpload(ctx, "b", u.ID, -1, bytes.NewReader([]byte("x"))); ErrorCode(err) != CodeBlobUploadUnknown {
		t.Fatalf("an upload of repository a accepted a chunk through b: %v", err)
	}
}

func TestDeleteRepository(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, time.Hour)
	cfg := []byte(`{}`)
	cd := f.blob(t, "gone/app", cfg)
	if _, err := f.svc.PutManifest(ctx, "gone/app", "v1", MediaTypeOCIManifest, imageManifest(cd, len(cfg))); err != nil {
		t.Fatal(err)
	}
	u, _ := f.svc.StartUpload(ctx, "gone/app")
	info, err := f.svc.Repository(ctx, "gone/app")
	if err != nil || info.ManifestCount != 1 || info.TagCount != 1 || info.BlobCount != 1 {
		t.Fatalf("Repository = %+v, %v", info, err)
	}
	if err := f.svc.DeleteRepository(ctx, "gone/app"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Repository(ctx, "gone/app"); ErrorCode(err) != CodeNameUnknown {
		t.Fatalf("deleted repository answers %v", err)
	}
	if _, _, err := f.svc.Tags(ctx, "gone/app", "", -1); ErrorCode(err) != CodeNameUnknown {
		t.Fatalf("tags of a deleted repository: %v", err)
	}
	if _, err := f.driver.ResumeWriter(ctx, uploadPath(u.ID)); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatal("the deleted repository's upload bytes remain")
	}
	if err := f.svc.DeleteRepository(ctx, "gone/app"); ErrorCode(err) != CodeNameUnknown {
		t.Fatalf("second delete: %v", err)
	}
}

// TestGCRacesBlobChecks: a HEAD that refreshes a stale link while the collector removes
// the blob must never leave a row without its file (a manifest could then reference
// bytes that are gone).
func TestGCRacesBlobChecks(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, time.Hour)
	var digests []digest.Digest
	for i := range 40 {
		digests = append(digests, f.blob(t, "race", []byte(fmt.Sprintf("stale %d", i))))
	}
	f.clock.Advance(2 * time.Hour)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if _, err := f.svc.GC(ctx, false, nil); err != nil {
			t.Errorf("GC: %v", err)
		}
	}()
	go func() {
		defer wg.Done()
		for _, d := range digests {
			f.svc.StatBlob(ctx, "race", d)
		}
	}()
	wg.Wait()
	for _, d := range digests {
		known, err := f.svc.meta.BlobKnown(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		_, serr := f.driver.Stat(ctx, blobPath(d))
		if known && serr != nil {
			t.Fatalf("blob %s has a row but no file after a GC raced a check", d)
		}
		if _, err := f.svc.StatBlob(ctx, "race", d); err == nil && serr != nil {
			t.Fatalf("blob %s answers HEAD but its file is gone", d)
		}
	}
}

func TestBusyIsTooManyRequests(t *testing.T) {
	// A real busy database: a writer holds it and a connection that will not wait is refused.
	busy := storetest.BusyError(t)
	err := asRegistryError(fmt.Errorf("link blob: %w", busy))
	if ErrorCode(err) != CodeTooManyRequests {
		t.Fatalf("busy database: %v, want TOOMANYREQUESTS", err)
	}
	plain := errors.New("disk full")
	if got := asRegistryError(plain); got != plain {
		t.Fatalf("other failures pass through: %v", got)
	}
	spec := newError(CodeBlobUnknown, "x")
	if got := asRegistryError(spec); got != error(spec) {
		t.Fatal("registry errors pass through")
	}
}

// TestNoPlaintextInMetadata: chunked uploads keep no plaintext in the metadata database
// (a marshalled hash state would hold the last partial block of each chunk).
func TestNoPlaintextInMetadata(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := storetest.SQLiteAt(t, dir+"/metadata.db")
	meta, err := NewSQLMetadata(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	drv, _ := filesystem.New(dir + "/blobs")
	svc := New(drv, meta, Options{})
	marker := []byte("PLAINTEXT-MARKER-7f3a")
	chunk1 := append(bytes.Repeat([]byte{'a'}, 1000), marker...) // the marker ends the chunk: a partial block
	chunk2 := append(bytes.Repeat([]byte{'b'}, 100), marker...)
	u, err := svc.StartUpload(ctx, "secret")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AppendUpload(ctx, "secret", u.ID, 0, bytes.NewReader(chunk1)); err != nil {
		t.Fatal(err)
	}
	// A second service on the same store is a restart: no running hash survives it.
	restarted := New(drv, meta, Options{})
	if _, err := restarted.AppendUpload(ctx, "secret", u.ID, int64(len(chunk1)), bytes.NewReader(chunk2)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"metadata.db", "metadata.db-wal"} {
		raw, _ := os.ReadFile(filepath.Join(dir, f))
		if bytes.Contains(raw, marker) {
			t.Fatalf("%s holds plaintext of an upload", f)
		}
	}
	all := append(append([]byte{}, chunk1...), chunk2...)
	// Closing after the restart verifies by reading back: a wrong digest is refused...
	if _, err := restarted.FinishUpload(ctx, "secret", u.ID, -1, nil, digest.FromBytes([]byte("wrong"))); ErrorCode(err) != CodeDigestInvalid {
		t.Fatalf("wrong digest after a restart: %v", err)
	}
	// ...and a right one accepted (on a fresh upload, the refused one is gone).
	u2, _ := restarted.StartUpload(ctx, "secret")
	restarted.AppendUpload(ctx, "secret", u2.ID, 0, bytes.NewReader(chunk1))
	again := New(drv, meta, Options{})
	b, err := again.FinishUpload(ctx, "secret", u2.ID, int64(len(chunk1)), bytes.NewReader(chunk2), digest.FromBytes(all))
	if err != nil || b.Size != int64(len(all)) {
		t.Fatalf("finish after a restart: %+v %v", b, err)
	}
	rc, _, err := again.OpenBlob(ctx, "secret", digest.FromBytes(all), 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, all) {
		t.Fatal("blob differs after a resumed upload")
	}
}
