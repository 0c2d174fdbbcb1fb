package replicas_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// TestDatabaseRestartUnderTwoReplicas: two clients push and one pulls through the proxy
// while PostgreSQL is stopped (at once, as a crash) and started again. While it is down,
// readiness is false on both replicas and every registry request fails cleanly: 503
// UNAVAILABLE in the registry's error shape with Retry-After, never a 500 or a 404 that
// calls existing content unknown. Once it is back, both replicas serve again without a
// restart, pushes are acknowledged again, and every push acknowledged before, during or
// after the outage pulls intact, digests verified, from each replica.
func TestDatabaseRestartUnderTwoReplicas(t *testing.T) {
	c := startCluster(t, nil)
	auth := &authn.Basic{Username: "admin", Password: c.password}
	rec := &statusRecorder{inner: c.client.Transport}
	viaProxy := []remote.Option{remote.WithAuth(auth), remote.WithTransport(rec), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
	base := randomImage(t, 256<<10, 4096)
	baseRef, _ := name.NewTag(c.addr() + "/team/app:base")
	if err := remote.Write(baseRef, base, viaProxy...); err != nil {
		t.Fatal(err)
	}

	var phase atomic.Int32 // 0 before the outage, 1 during, 2 after the restart
	var mu sync.Mutex
	acked := map[string]v1.Image{}
	ackedIn := [3]int{}
	var pulls [3]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tag := fmt.Sprintf("w%d-%d", w, i)
				img := randomImage(t, 128<<10, 4096)
				ref, _ := name.NewTag(c.addr() + "/team/app:" + tag)
				if err := remote.Write(ref, img, viaProxy...); err != nil {
					time.Sleep(100 * time.Millisecond) // not acknowledged: the database is down
					continue
				}
				p := phase.Load()
				mu.Lock()
				acked[tag] = img
				ackedIn[p]++
				mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() { // a client pulling the same image all along
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := readImage(baseRef, viaProxy...); err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			pulls[phase.Load()].Add(1)
		}
	}()
	waitFor := func(what string, within time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(within); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("%s: not within %s", what, within)
			}
		}
	}
	count := func(p int) int { mu.Lock(); defer mu.Unlock(); return ackedIn[p] }
	waitFor("pushes before the outage", 2*time.Minute, func() bool { return count(0) >= 4 })

	// Tokens taken before the outage, so that requests during it reach each registry.
	direct := make([]*http.Client, len(c.replicas))
	for i, r := range c.replicas {
		repo, _ := name.NewRepository(r.Addr + "/team/app")
		tr, err := transport.NewWithContext(t.Context(), repo.Registry, auth, r.Client.Transport, []string{repo.Scope("pull,push,delete")})
		if err != nil {
			t.Fatal(err)
		}
		direct[i] = &http.Client{Transport: tr}
	}

	c.pg.Stop(t)
	phase.Store(1)
	for i, r := range c.replicas {
		checkOutage(t, i, r, direct[i], base)
	}
	time.Sleep(2 * time.Second) // the clients keep trying against the stopped database
	for i, r := range c.replicas {
		checkOutage(t, i, r, direct[i], base)
	}

	c.pg.Restart(t)
	phase.Store(2)
	for i, r := range c.replicas {
		took := vaulttest.Eventually(t, 30*time.Second, fmt.Sprintf("replica %d ready again", i), func() error {
			resp, err := r.Client.Get(r.URL + "/readyz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("readyz: %d", resp.StatusCode)
			}
			return nil
		})
		t.Logf("replica %d ready %s after the restart", i, took.Round(10*time.Millisecond))
	}
	waitFor("pushes and pulls after the restart", 2*time.Minute, func() bool { return count(2) >= 4 && pulls[2].Load() >= 2 })
	close(stop)
	wg.Wait()

	// What the clients met: never a 500, never existing content called unknown.
	if bad := rec.bad(); len(bad) > 0 {
		t.Errorf("responses through the proxy that are not a clean failure:\n%s", strings.Join(bad, "\n"))
	}
	t.Logf("statuses through the proxy: %s", rec.summary())

	// Nothing acknowledged is lost: every push pulls intact from each replica.
	for i, r := range c.replicas {
		opts := []remote.Option{remote.WithAuth(auth), remote.WithTransport(r.Client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
		acked["base"] = base
		for tag, img := range acked {
			ref, _ := name.NewTag(r.Addr + "/team/app:" + tag)
			pullVerified(t, ref, img, opts...)
		}
		t.Logf("replica %d serves all %d acknowledged pushes", i, len(acked))
	}
	t.Logf("pushes acknowledged before/during/after the outage: %v; pulls: %d/%d/%d",
		ackedIn, pulls[0].Load(), pulls[1].Load(), pulls[2].Load())
}

// checkOutage asserts replica r's answers with the database stopped: readiness false, and
// 503 UNAVAILABLE with Retry-After for reads and writes of the registry (hc holds a token
// taken before).
func checkOutage(t *testing.T, i int, r *servertest.Instance, hc *http.Client, img v1.Image) {
	t.Helper()
	resp, err := r.Client.Get(r.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("replica %d: readyz during the outage: %d, want 503", i, resp.StatusCode)
	}
	d, _ := img.Digest()
	raw, _ := img.RawManifest()
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	for _, req := range []struct {
		method, path, ctype string
		body                []byte
	}{
		{"GET", "/v2/team/app/manifests/base", "", nil},
		{"HEAD", "/v2/team/app/manifests/" + d.String(), "", nil},
		{"GET", "/v2/team/app/blobs/" + ld.String(), "", nil},
		{"HEAD", "/v2/team/app/blobs/" + ld.String(), "", nil},
		{"GET", "/v2/team/app/tags/list", "", nil},
		{"POST", "/v2/team/app/blobs/uploads/", "", nil},
		{"PUT", "/v2/team/app/manifests/during-outage", string(types.OCIManifestSchema1), raw},
		{"DELETE", "/v2/team/app/manifests/base", "", nil},
	} {
		hr, _ := http.NewRequest(req.method, r.URL+req.path, bytes.NewReader(req.body))
		hr.Header.Set("Accept", string(types.OCIManifestSchema1))
		if req.ctype != "" {
			hr.Header.Set("Content-Type", req.ctype)
		}
		resp, err := hc.Do(hr)
		if err != nil {
			t.Fatalf("replica %d: %s %s: %v", i, req.method, req.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		okBody := req.method == "HEAD" || strings.Contains(string(body), `"code":"UNAVAILABLE"`)
		if resp.StatusCode != http.StatusServiceUnavailable || !okBody || resp.Header.Get("Retry-After") == "" {
			t.Errorf("replica %d: %s %s during the outage: %d %.200s (Retry-After %q), want 503 UNAVAILABLE",
				i, req.method, req.path, resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
	}
}

// statusRecorder counts the responses clients get, and keeps those that are not a clean
// answer: any 5xx other than 503, a 503 without the registry's UNAVAILABLE (on /v2/), a
// 400, and a 404 to anything but a push's existence checks (HEAD) or an upload session
// lost with the database's unflushed commits.
type statusRecorder struct {
	inner  http.RoundTripper
	mu     sync.Mutex
	counts map[int]int
	wrong  []string
}

func (s *statusRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.inner.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	var body []byte
	if resp.StatusCode >= 400 {
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	what := fmt.Sprintf("%s %s: %d %.200s", req.Method, req.URL.Path, resp.StatusCode, body)
	bad := false
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable:
		bad = strings.HasPrefix(req.URL.Path, "/v2/") && req.Method != http.MethodHead && !bytes.Contains(body, []byte(`"code":"UNAVAILABLE"`))
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusBadRequest:
		bad = true // the clients send nothing invalid
	case resp.StatusCode == http.StatusNotFound:
		// Allowed: a push's checks that a blob or tag is not there yet (HEAD; those of
		// content that exists are checked during the outage below), and an upload session the
		// database's crash took (sessions are committed without a flush, by design: the
		// client starts that upload again).
		bad = req.Method != http.MethodHead &&
			!(strings.Contains(req.URL.Path, "/blobs/uploads/") && bytes.Contains(body, []byte("BLOB_UPLOAD_UNKNOWN")))
	}
	s.mu.Lock()
	if s.counts == nil {
		s.counts = map[int]int{}
	}
	s.counts[resp.StatusCode]++
	if bad {
		s.wrong = append(s.wrong, what)
	}
	s.mu.Unlock()
	return resp, nil
}

func (s *statusRecorder) bad() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.wrong...)
}

func (s *statusRecorder) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for code, n := range s.counts {
		out = append(out, fmt.Sprintf("%d×%d", n, code))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
