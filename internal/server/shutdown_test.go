package server_test

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/servertest"
)

// TestShutdownLetsInFlightRequestsFinish starts a blob upload whose body is still being
// sent when the server is told to stop: the upload must complete and be acknowledged, and
// the server must refuse new connections while it drains.
func TestShutdownLetsInFlightRequestsFinish(t *testing.T) {
	inst := servertest.Start(t, nil)
	tok := registryToken(t, inst, "shutdown/test")

	req, _ := http.NewRequest(http.MethodPost, inst.URL+"/v2/shutdown/test/blobs/uploads/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %d", resp.StatusCode)
	}
	loc, _ := resp.Location()

	content := []byte(strings.Repeat("in flight ", 100000))
	digest := fmt.Sprintf("sha256:%x", sha256.Sum256(content))
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	pr, pw := io.Pipe()
	put, _ := http.NewRequest(http.MethodPut, loc.String(), pr)
	put.ContentLength = int64(len(content))
	put.Header.Set("Authorization", "Bearer "+tok)
	put.Header.Set("Content-Type", "application/octet-stream")
	type result struct {
		resp *http.Response
		err  error
	}
	// With Expect: 100-continue the client sends the body only after the server's handler
	// has started reading it, so once the first half has gone into the pipe the request is
	// certainly in flight (not an idle connection that shutdown may close). HTTP/1.1 keeps
	// that handshake simple.
	put.Header.Set("Expect", "100-continue")
	tr := inst.Client.Transport.(*http.Transport).Clone()
	tr.ExpectContinueTimeout = time.Minute
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	putClient := &http.Client{Transport: tr}
	done := make(chan result, 1)
	go func() {
		r, err := putClient.Do(put)
		done <- result{r, err}
	}()
	half := len(content) / 2
	if _, err := pw.Write(content[:half]); err != nil {
		res := <-done
		if res.err != nil {
			t.Fatalf("send the first half: %v (request: %v)", err, res.err)
		}
		body, _ := io.ReadAll(res.resp.Body)
		t.Fatalf("send the first half: %v (server answered %d %s)", err, res.resp.StatusCode, body)
	}

	stopped := make(chan struct{})
	go func() { inst.Stop(); close(stopped) }()
	// Wait until the server no longer accepts new connections (it is draining).
	deadline := time.Now().Add(10 * time.Second)
	for {
		fresh := &http.Client{Transport: inst.Client.Transport.(*http.Transport).Clone(), Timeout: time.Second}
		r, err := fresh.Get(inst.URL + "/healthz")
		if err != nil {
			break
		}
		r.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("the server still accepts new connections 10s after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-stopped:
		t.Fatal("the server stopped before the in-flight upload finished")
	default:
	}

	if _, err := pw.Write(content[half:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	res := <-done
	if res.err != nil {
		t.Fatalf("in-flight upload failed during shutdown: %v", res.err)
	}
	res.resp.Body.Close()
	if res.resp.StatusCode != http.StatusCreated || res.resp.Header.Get("Docker-Content-Digest") != digest {
		t.Fatalf("in-flight upload: %d %s", res.resp.StatusCode, res.resp.Header.Get("Docker-Content-Digest"))
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not stop after the last request finished")
	}

	// The acknowledged blob is there after a restart on the same data directory.
	again := servertest.Start(t, func(c *config.Server) { c.DataDir = inst.DataDir })
	tok = registryToken(t, again, "shutdown/test")
	head, _ := http.NewRequest(http.MethodHead, again.URL+"/v2/shutdown/test/blobs/"+digest, nil)
	head.Header.Set("Authorization", "Bearer "+tok)
	r, err := again.Client.Do(head)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK || r.ContentLength != int64(len(content)) {
		t.Fatalf("blob acknowledged during shutdown, after restart: %d, length %d", r.StatusCode, r.ContentLength)
	}
}

func registryToken(t *testing.T, inst *servertest.Instance, repo string) string {
	t.Helper()
	q := url.Values{"service": {"coffer-registry"}, "scope": {"repository:" + repo + ":pull,push"}}
	req, _ := http.NewRequest(http.MethodGet, inst.URL+"/oauth2/token?"+q.Encode(), nil)
	req.SetBasicAuth("admin", inst.AdminPassword)
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil || body.Token == "" {
		t.Fatalf("registry token: %d", resp.StatusCode)
	}
	return body.Token
}
