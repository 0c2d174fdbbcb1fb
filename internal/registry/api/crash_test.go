package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/servertest"
)

// cofferProcess is a `coffer serve` child process.
type cofferProcess struct {
	proc   *servertest.Process
	url    string
	client *http.Client
	pass   string
}

func startProcess(t *testing.T, dataDir string) *cofferProcess {
	t.Helper()
	proc := servertest.StartProcess(t, t.TempDir(), nil, "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--log-level", "warn")
	client := servertest.ClientTrusting(t, filepath.Join(dataDir, "tls", "ca.pem"))
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 16
	pw, _ := os.ReadFile(filepath.Join(dataDir, "initial-admin-password"))
	return &cofferProcess{proc: proc, url: proc.URL, client: client, pass: strings.TrimSpace(string(pw))}
}

// killAfter SIGKILLs the server once acked() reaches want (or after a minute, whichever
// comes first), while the clients' other requests are still in flight, and reaps it.
func (p *cofferProcess) killAfter(t *testing.T, want int, acked func() int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for acked() < want && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if err := p.proc.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.proc.Wait()
}

func (p *cofferProcess) token(scope string) (string, error) {
	req, _ := http.NewRequest("GET", p.url+"/oauth2/token?service=coffer-registry&scope="+url.QueryEscape(scope), nil)
	req.SetBasicAuth("admin", p.pass)
	resp, err := p.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tr struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("token: %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		return "", err
	}
	return tr.Token, nil
}

func (p *cofferProcess) do(ctx context.Context, tok, method, path string, body []byte, hdr map[string]string) (*http.Response, []byte, error) {
	req, _ := http.NewRequestWithContext(ctx, method, p.url+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

type crashImage struct {
	tag      string
	manifest []byte
	blobs    map[digest.Digest][]byte
}

// TestCrashDuringPushes kills the server with SIGKILL in the middle of a batch of
// concurrent pushes, restarts it on the same data directory, and checks that every
// acknowledged push is intact and that nothing half-written is served.
func TestCrashDuringPushes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the coffer binary")
	}
	dataDir := t.TempDir()
	p := startProcess(t, dataDir)
	const repo = "crash/app"
	tok, err := p.token("repository:" + repo + ":pull,push")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var acked, attempted []crashImage
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				im := crashImage{tag: fmt.Sprintf("w%d-%d", w, i), blobs: map[digest.Digest][]byte{}}
				cfg := []byte(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
				layer := make([]byte, 256<<10+i*4096)
				rand.Read(layer)
				im.blobs[digest.FromBytes(cfg)] = cfg
				im.blobs[digest.FromBytes(layer)] = layer
				m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
					"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest.FromBytes(cfg), "size": len(cfg)},
					"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest.FromBytes(layer), "size": len(layer)}}})
				im.manifest = m
				mu.Lock()
				attempted = append(attempted, im)
				mu.Unlock()
				ok := true
				for d, b := range im.blobs {
					// Chunked: POST, PATCH, PUT, so the kill can land mid-upload.
					resp, _, err := p.do(ctx, tok, "POST", "/v2/"+repo+"/blobs/uploads/", nil, nil)
					if err != nil || resp.StatusCode != 202 {
						ok = false
						break
					}
					loc := resp.Header.Get("Location")
					resp, _, err = p.do(ctx, tok, "PATCH", loc, b, nil)
					if err != nil || resp.StatusCode != 202 {
						ok = false
						break
					}
					resp, _, err = p.do(ctx, tok, "PUT", resp.Header.Get("Location")+"?digest="+d.String(), nil, nil)
					if err != nil || resp.StatusCode != 201 {
						ok = false
						break
					}
				}
				if !ok {
					return
				}
				resp, _, err := p.do(ctx, tok, "PUT", "/v2/"+repo+"/manifests/"+im.tag, m,
					map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
				if err != nil || resp.StatusCode != 201 {
					return
				}
				mu.Lock()
				acked = append(acked, im)
				mu.Unlock()
			}
		}()
	}
	// Kill once a good number of pushes were acknowledged, while others are in flight.
	p.killAfter(t, 24, func() int { mu.Lock(); defer mu.Unlock(); return len(acked) })
	cancel()
	wg.Wait()
	mu.Lock()
	ackedNow, attemptedNow := append([]crashImage(nil), acked...), append([]crashImage(nil), attempted...)
	mu.Unlock()
	if len(ackedNow) == 0 {
		t.Fatal("no push was acknowledged before the kill")
	}
	t.Logf("killed after %d acknowledged pushes of %d attempted", len(ackedNow), len(attemptedNow))

	p2 := startProcess(t, dataDir)
	tok2, err := p2.token("repository:" + repo + ":pull")
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	// Every acknowledged push is intact.
	for _, im := range ackedNow {
		resp, body, err := p2.do(bg, tok2, "GET", "/v2/"+repo+"/manifests/"+im.tag, nil, nil)
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, im.manifest) {
			t.Fatalf("acknowledged %s lost after the crash: %v %v", im.tag, err, resp)
		}
		for d, b := range im.blobs {
			resp, body, err := p2.do(bg, tok2, "GET", "/v2/"+repo+"/blobs/"+d.String(), nil, nil)
			if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, b) {
				t.Fatalf("blob %s of acknowledged %s lost or damaged after the crash", d, im.tag)
			}
		}
	}
	// Nothing half-written is served: whatever answers 200 is whole and right.
	for _, im := range attemptedNow {
		resp, body, err := p2.do(bg, tok2, "GET", "/v2/"+repo+"/manifests/"+im.tag, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 200 && !bytes.Equal(body, im.manifest) {
			t.Fatalf("manifest %s served damaged after the crash", im.tag)
		}
		if resp.StatusCode != 200 && resp.StatusCode != 404 {
			t.Fatalf("manifest %s: status %d", im.tag, resp.StatusCode)
		}
		for d, b := range im.blobs {
			resp, body, err := p2.do(bg, tok2, "GET", "/v2/"+repo+"/blobs/"+d.String(), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			switch resp.StatusCode {
			case 200:
				if !bytes.Equal(body, b) {
					t.Fatalf("blob %s served half-written after the crash (%d of %d bytes)", d, len(body), len(b))
				}
			case 404:
			default:
				t.Fatalf("blob %s: status %d", d, resp.StatusCode)
			}
		}
	}
}

// TestCrashDuringSmallPushes kills the server with SIGKILL while 8 clients push small blobs
// (POST, then a PUT carrying the bytes: the group-committed path, where concurrent uploads
// share their flushes), restarts it, and checks that every acknowledged blob is intact and
// that whatever else is served is whole.
func TestCrashDuringSmallPushes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the coffer binary")
	}
	dataDir := t.TempDir()
	p := startProcess(t, dataDir)
	const repo = "crash/small"
	tok, err := p.token("repository:" + repo + ":pull,push")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[digest.Digest][]byte{}
	var attempted [][]byte
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				b := make([]byte, 4<<10)
				rand.Read(b)
				d := digest.FromBytes(b)
				mu.Lock()
				attempted = append(attempted, b)
				mu.Unlock()
				resp, _, err := p.do(ctx, tok, "POST", "/v2/"+repo+"/blobs/uploads/", nil, nil)
				if err != nil || resp.StatusCode != 202 {
					return
				}
				resp, _, err = p.do(ctx, tok, "PUT", resp.Header.Get("Location")+"?digest="+d.String(), b,
					map[string]string{"Content-Type": "application/octet-stream"})
				if err != nil || resp.StatusCode != 201 {
					return
				}
				mu.Lock()
				acked[d] = b
				mu.Unlock()
			}
		}()
	}
	p.killAfter(t, 200, func() int { mu.Lock(); defer mu.Unlock(); return len(acked) })
	cancel()
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no push was acknowledged before the kill")
	}
	t.Logf("killed after %d acknowledged small pushes of %d attempted", len(acked), len(attempted))

	p2 := startProcess(t, dataDir)
	tok2, err := p2.token("repository:" + repo + ":pull")
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	for d, b := range acked {
		resp, body, err := p2.do(bg, tok2, "GET", "/v2/"+repo+"/blobs/"+d.String(), nil, nil)
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, b) {
			t.Fatalf("acknowledged blob %s lost or damaged after the crash: %v %v", d, err, resp)
		}
	}
	for _, b := range attempted {
		d := digest.FromBytes(b)
		resp, body, err := p2.do(bg, tok2, "GET", "/v2/"+repo+"/blobs/"+d.String(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch resp.StatusCode {
		case 200:
			if !bytes.Equal(body, b) {
				t.Fatalf("blob %s served damaged after the crash (%d of %d bytes)", d, len(body), len(b))
			}
		case 404:
		default:
			t.Fatalf("blob %s: status %d", d, resp.StatusCode)
		}
	}
}
