package replicas_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// TestGCOnBothReplicasBesidePushes: both replicas run the online garbage collector at
// once (every 500 ms on schedule, and through the management API on both together) while
// two clients push images through the proxy, re-tag them, delete tags and delete
// manifests. Each client also deletes an image and pushes the very same image again the
// moment a collector starts removing one of its blobs' bytes (a proxy in front of the
// bucket sees the DELETE and holds it for a second): the row is gone, the bytes are not,
// and the push, on either replica, records the blob again. That is the race the
// per-digest lock (store.DB.Lock, a PostgreSQL advisory lock) closes: the push waits for
// the sweep, finds the blob gone and stores it afresh. With the lock in each process only
// (Options.Lock unset), the other replica's push records the blob, the held DELETE then
// removes its bytes, and the acknowledged image no longer pulls: measured, 7 and 10 of 22
// live images lost in two runs; with the lock, none.
//
// Afterwards every image still referenced (by a tag, or acknowledged and not deleted by
// digest) pulls intact, digests verified, from each replica; the blobs and manifests only
// deleted images referenced are gone from the bucket; and both replicas' metrics count
// successful collections.
func TestGCOnBothReplicasBesidePushes(t *testing.T) {
	const grace = 4 * time.Second
	// The replicas reach the bucket through a proxy that watches the collectors' removals
	// of blob objects: a client learns when one of its deleted image's blobs is being
	// swept (its row is gone, its bytes are not yet), and the proxy holds that removal for
	// a second, as a loaded object store may, so the client's new push meets the sweep.
	var watchMu sync.Mutex
	var watch *sweepWatch
	c := startCluster(t, func(cfg *config.Server) {
		cfg.Registry.GCInterval = 500 * time.Millisecond
		cfg.Registry.GCGrace = grace
		watchMu.Lock()
		if watch == nil {
			watch = watchSweeps(t, cfg.BlobStore.S3Endpoint, time.Second)
		}
		cfg.BlobStore.S3Endpoint = watch.url
		watchMu.Unlock()
	})
	auth := &authn.Basic{Username: "admin", Password: c.password}
	viaProxy := []remote.Option{remote.WithAuth(auth), remote.WithTransport(c.client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
	repo := c.addr() + "/team/gc"
	mgmts := []*vaulttest.Env{adminEnv(t, c.replicas[0], c.password), adminEnv(t, c.replicas[1], c.password)}

	var mu sync.Mutex
	live := map[v1.Hash]v1.Image{} // acknowledged and not deleted by digest
	var garbage []v1.Hash          // blobs and manifests only deleted images referenced
	failed := 0                    // pushes not acknowledged (a collector raced them: allowed)
	repushed := 0                  // deleted images pushed again as their blobs became garbage
	keep := func(img v1.Image) {
		d, _ := img.Digest()
		mu.Lock()
		live[d] = img
		mu.Unlock()
	}
	drop := func(img v1.Image) error {
		d, _ := img.Digest()
		ref, _ := name.NewDigest(repo + "@" + d.String())
		if err := remote.Delete(ref, viaProxy...); err != nil {
			return fmt.Errorf("delete %s: %w", d, err)
		}
		mu.Lock()
		delete(live, d)
		mu.Unlock()
		return nil
	}
	push := func(tag string, img v1.Image) bool {
		ref, _ := name.NewTag(repo + ":" + tag)
		start := time.Now()
		if err := remote.Write(ref, img, viaProxy...); err != nil {
			t.Logf("push %s (not acknowledged after %s): %.300v", tag, time.Since(start).Round(time.Millisecond), err)
			mu.Lock()
			failed++
			mu.Unlock()
			return false
		}
		keep(img)
		return true
	}
	// Four layers shared by many images, so that deleting one image leaves them in use.
	shared := make([]v1.Layer, 4)
	for i := range shared {
		l, _ := randomImage(t, 32<<10).Layers()
		shared[i] = l[0]
	}

	errc := make(chan error, 16)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var prev v1.Image
			// Pushes, re-tags and deletes of tags and manifests.
			for i := range 9 {
				img, err := mutate.AppendLayers(randomImage(t, 4096), shared[(w+i)%len(shared)])
				if err != nil {
					errc <- err
					return
				}
				tag := fmt.Sprintf("w%d-%d", w, i)
				if !push(tag, img) {
					continue
				}
				latest, _ := name.NewTag(fmt.Sprintf("%s:w%d-latest", repo, w))
				if err := remote.Tag(latest, img, viaProxy...); err != nil {
					errc <- fmt.Errorf("re-tag %s: %w", tag, err)
					return
				}
				switch {
				case prev == nil:
				case i%3 == 1: // delete the previous image's tag: it stays, untagged, by digest
					old, _ := name.NewTag(fmt.Sprintf("%s:w%d-%d", repo, w, i-1))
					if err := remote.Delete(old, viaProxy...); err != nil {
						errc <- fmt.Errorf("delete tag %s: %w", old, err)
						return
					}
				case i%3 == 2: // delete the previous image: its own blobs become garbage
					if err := drop(prev); err != nil {
						errc <- err
						return
					}
					mu.Lock()
					garbage = append(garbage, ownBlobs(prev)...)
					mu.Unlock()
				}
				prev = img
			}
			// The same image deleted and pushed again just as its blobs become garbage.
			for i := range 5 {
				img := randomImage(t, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048)
				tag := fmt.Sprintf("w%d-again-%d", w, i)
				if !push(tag, img) {
					continue
				}
				if err := drop(img); err != nil {
					errc <- err
					return
				}
				// Pushed again the moment a collector starts removing one of its blobs'
				// bytes: that blob's row is gone, and the push records it again.
				swept := watch.expect(ownBlobs(img))
				select {
				case <-swept:
				case <-time.After(grace + 30*time.Second):
					errc <- fmt.Errorf("no collector swept the deleted image %s", tag)
					return
				}
				ok := push(tag, img)
				watch.forget(ownBlobs(img))
				if ok {
					mu.Lock()
					repushed++
					mu.Unlock()
				}
			}
		}()
	}
	// Collections through the management API on both replicas at once, beside the
	// scheduled ones, while the clients work.
	stop := make(chan struct{})
	var gcs sync.WaitGroup
	freedByAPI := make([]int64, 2)
	for i, m := range mgmts {
		gcs.Add(1)
		go func() {
			defer gcs.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
				var rep wire.GCReport
				if err := m.Do("POST", "/coffer/v1/registry/gc", nil, &rep); err != nil {
					errc <- fmt.Errorf("GC through replica %d's management API: %w", i, err)
					return
				}
				freedByAPI[i] += rep.BytesFreed
			}
		}()
	}
	wg.Wait()
	close(stop)
	gcs.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	acked := len(live)
	if acked < 20 {
		t.Fatalf("only %d images acknowledged (%d pushes failed)", acked, failed)
	}

	// Nothing referenced is lost: every live image from each replica, digests verified.
	for i, r := range c.replicas {
		direct := []remote.Option{remote.WithAuth(auth), remote.WithTransport(r.Client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
		lost := 0
		for d := range live {
			// By digest: go-containerregistry verifies the manifest's digest, and each
			// layer's at its end.
			ref, _ := name.NewDigest(strings.Replace(repo, c.addr(), r.Addr, 1) + "@" + d.String())
			if err := readImage(ref, direct...); err != nil {
				t.Errorf("replica %d: acknowledged image %s: %v", i, d, err)
				lost++
			}
		}
		if lost > 0 {
			t.Fatalf("replica %d: %d of %d live images do not pull intact", i, lost, len(live))
		}
		t.Logf("replica %d serves all %d live images", i, len(live))
	}
	// The tags moved last still name each client's latest image.
	for w := range 2 {
		ref, _ := name.NewTag(fmt.Sprintf("%s:w%d-latest", repo, w))
		if _, err := remote.Head(ref, viaProxy...); err != nil {
			t.Errorf("re-tagged w%d-latest: %v", w, err)
		}
	}

	// Garbage is freed: what only deleted images referenced leaves the bucket, once the
	// grace period has passed and a collector has run; what live images reference stays.
	for _, img := range live {
		for _, d := range ownBlobs(img) {
			if !c.inBucket(t, d) {
				t.Fatalf("blob %s of a live image is not in the bucket (at %s)", d, c.objectPath(d))
			}
		}
	}
	vaulttest.Eventually(t, grace+30*time.Second, "the deleted images' blobs leave the bucket", func() error {
		n := 0
		for _, d := range garbage {
			if c.inBucket(t, d) && !usedBy(live, d) {
				n++
			}
		}
		if n > 0 {
			return fmt.Errorf("%d of %d garbage blobs still in the bucket", n, len(garbage))
		}
		return nil
	})

	// Both replicas collected: their metrics count successful runs and freed bytes.
	var freed float64
	for i, r := range c.replicas {
		runs := metric(t, r, `coffer_registry_gc_runs_total{result="ok"}`)
		errs := metric(t, r, `coffer_registry_gc_runs_total{result="error"}`)
		f := metric(t, r, "coffer_registry_gc_freed_bytes_total")
		if runs == 0 {
			t.Errorf("replica %d ran no garbage collection", i)
		}
		t.Logf("replica %d: %v collections (%v failed), %v bytes freed (%d through the API)", i, runs, errs, f, freedByAPI[i])
		freed += f
	}
	if freed == 0 {
		t.Error("no replica freed any bytes")
	}
	t.Logf("%d images acknowledged and live (%d pushed again after their deletion), %d pushes not acknowledged, %d garbage blobs freed",
		acked, repushed, failed, len(garbage))
}

// sweepWatch is a proxy in front of the S3 endpoint that tells when the removal of an
// expected blob's object starts, and holds that removal for a while.
type sweepWatch struct {
	url  string
	hold time.Duration
	mu   sync.Mutex
	// waiting maps a blob's hex digest to the function that signals its client.
	waiting map[string]func()
}

func watchSweeps(t *testing.T, endpoint string, hold time.Duration) *sweepWatch {
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	w := &sweepWatch{hold: hold, waiting: map[string]func(){}}
	srv := httptest.NewServer(&httputil.ReverseProxy{ErrorLog: log.New(io.Discard, "", 0), Rewrite: func(pr *httputil.ProxyRequest) {
		if pr.In.Method == http.MethodDelete && strings.Contains(pr.In.URL.Path, "/blobs/") {
			w.mu.Lock()
			signal := w.waiting[path.Base(pr.In.URL.Path)]
			w.mu.Unlock()
			if signal != nil {
				signal()
				time.Sleep(w.hold)
			}
		}
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host // the host the request was signed for
	}})
	t.Cleanup(srv.Close)
	w.url = srv.URL
	return w
}

// expect returns a channel closed when the removal of one of blobs starts.
func (w *sweepWatch) expect(blobs []v1.Hash) <-chan struct{} {
	ch := make(chan struct{})
	var once sync.Once
	signal := func() { once.Do(func() { close(ch) }) }
	w.mu.Lock()
	for _, d := range blobs {
		w.waiting[d.Hex] = signal
	}
	w.mu.Unlock()
	return ch
}

func (w *sweepWatch) forget(blobs []v1.Hash) {
	w.mu.Lock()
	for _, d := range blobs {
		delete(w.waiting, d.Hex)
	}
	w.mu.Unlock()
}

// ownBlobs are img's manifest, config and layers' digests.
func ownBlobs(img v1.Image) []v1.Hash {
	d, _ := img.Digest()
	cd, _ := img.ConfigName()
	out := []v1.Hash{d, cd}
	layers, _ := img.Layers() // in memory: no error
	for _, l := range layers {
		ld, _ := l.Digest()
		out = append(out, ld)
	}
	return out
}

// usedBy reports whether one of imgs has d among its blobs (a layer a deleted image
// shared with a live one is not garbage).
func usedBy(imgs map[v1.Hash]v1.Image, d v1.Hash) bool {
	for _, img := range imgs {
		if slices.Contains(ownBlobs(img), d) {
			return true
		}
	}
	return false
}

// objectPath is where versitygw keeps the (sealed) object of blob d: the registry's
// prefix in bucket "coffer", then blobs/<alg>/<2 hex>/<hex>.
func (c *cluster) objectPath(d v1.Hash) string {
	return filepath.Join(c.bucket.Dir, "coffer", "registry", "blobs", d.Algorithm, d.Hex[:2], d.Hex)
}

func (c *cluster) inBucket(t *testing.T, d v1.Hash) bool {
	_, err := os.Stat(c.objectPath(d))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// metric reads one sample of r's /metrics (0 if absent).
func metric(t *testing.T, r *servertest.Instance, series string) float64 {
	t.Helper()
	resp, err := r.Client.Get(r.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return f
		}
	}
	return 0
}
