package server_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/servertest"
)

// bound is how long a test waits for an answer or a close that the server must give at once
// or after a (sub-second) body timeout: generous, so a loaded machine does not fail it, and
// far below the "forever" of the failure.
const bound = 10 * time.Second

// dialTLS opens an HTTP/1.1 TLS connection to the test server.
func dialTLS(t *testing.T, inst *servertest.Instance) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", inst.Addr, &tls.Config{RootCAs: inst.CAPool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitClosed reads until the server closes c; it fails when the server keeps it open.
func waitClosed(t *testing.T, c net.Conn, r io.Reader, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(bound))
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the server still holds the connection after %s", what, bound)
	}
}

// TestHeadersThenNothingIsAnsweredAndClosed: a client that sends a request's headers,
// announces a body and then sends nothing is answered at once when it is not
// authenticated (the registry and the management API authenticate before reading a body)
// and the connection is closed soon after; the token endpoint, which must read its form,
// gives up after the body timeout.
func TestHeadersThenNothingIsAnsweredAndClosed(t *testing.T) {
	inst := servertest.Start(t, func(c *config.Server) { c.Limits.RequestBodyTimeout = 500 * time.Millisecond })
	cases := []struct {
		name, method, path, ctype string
		status                    int
	}{
		{"registry upload chunk", http.MethodPatch, "/v2/slow/app/blobs/uploads/0123456789abcdef", "application/octet-stream", http.StatusUnauthorized},
		{"registry manifest", http.MethodPut, "/v2/slow/app/manifests/v1", "application/vnd.oci.image.manifest.v1+json", http.StatusUnauthorized},
		{"management", http.MethodPost, "/coffer/v1/vaults", "application/json", http.StatusUnauthorized},
		{"token endpoint form", http.MethodPost, "/oauth2/token", "application/x-www-form-urlencoded", http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialTLS(t, inst)
			fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: 200000\r\n\r\n", tc.method, tc.path, inst.Addr, tc.ctype)
			c.SetReadDeadline(time.Now().Add(bound))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s %s with a body that never comes: no answer within %s: %v", tc.method, tc.path, bound, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.status)
			}
			waitClosed(t, c, br, tc.method+" "+tc.path)
		})
	}
}

// TestAuthenticatedHeadersThenNothingOverHTTP1: an authenticated upload chunk whose body
// never comes is cut after the body timeout and answered (not left as an empty 200 when the
// handler sees the connection fail), then the connection is closed.
func TestAuthenticatedHeadersThenNothingOverHTTP1(t *testing.T) {
	inst := servertest.Start(t, func(c *config.Server) { c.Limits.RequestBodyTimeout = 500 * time.Millisecond })
	tok := registryToken(t, inst, "slow/app")
	req, _ := http.NewRequest(http.MethodPost, inst.URL+"/v2/slow/app/blobs/uploads/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("start upload: %d", resp.StatusCode)
	}
	if u, err := url.Parse(loc); err == nil {
		loc = u.RequestURI()
	}
	c := dialTLS(t, inst)
	fmt.Fprintf(c, "PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/octet-stream\r\nContent-Length: 200000\r\n\r\n%s",
		loc, inst.Addr, tok, strings.Repeat("x", 1000))
	c.SetReadDeadline(time.Now().Add(bound))
	br := bufio.NewReader(c)
	got, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("an authenticated PATCH whose body stops: no answer within %s: %v", bound, err)
	}
	body, _ := io.ReadAll(got.Body)
	if got.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "request-body-timeout") {
		t.Fatalf("an authenticated PATCH whose body stops = %d %s, want 408 naming --request-body-timeout", got.StatusCode, body)
	}
	waitClosed(t, c, br, "PATCH after the body timeout")
}

// TestSlowButProgressingUploadIsNotCut: the body timeout is per read, so an upload that
// keeps sending is not cut however long it takes; one that stops, or trickles below the
// minimum rate, is.
func TestSlowButProgressingUploadIsNotCut(t *testing.T) {
	inst := servertest.Start(t, func(c *config.Server) {
		c.Limits.RequestBodyTimeout = time.Second
		c.Limits.RequestBodyMinRate = 1000
	})
	tok := registryToken(t, inst, "slow/app")
	start := func(t *testing.T) string {
		req, _ := http.NewRequest(http.MethodPost, inst.URL+"/v2/slow/app/blobs/uploads/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("start upload: %d", resp.StatusCode)
		}
		return resp.Header.Get("Location")
	}
	patch := func(t *testing.T, body io.Reader) (int, error) {
		req, _ := http.NewRequest(http.MethodPatch, inst.URL+start(t), body)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := inst.Client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// writer sends n chunks of size bytes, pausing gap between them; stop > 0 stalls after
	// that many chunks until the test ends.
	writer := func(t *testing.T, n, size int, gap time.Duration, stall int) io.Reader {
		pr, pw := io.Pipe()
		done := make(chan struct{})
		t.Cleanup(func() { close(done); pw.Close() })
		go func() {
			for i := 0; i < n; i++ {
				if stall > 0 && i == stall {
					<-done
					return
				}
				if _, err := pw.Write([]byte(strings.Repeat("x", size))); err != nil {
					return
				}
				select {
				case <-time.After(gap):
				case <-done:
					return
				}
			}
			pw.Close()
		}()
		return pr
	}

	t.Run("progressing for three body timeouts", func(t *testing.T) {
		t.Parallel()
		code, err := patch(t, writer(t, 60, 1024, 50*time.Millisecond, 0))
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("an upload sending 1 KiB every 50ms for 3s (body timeout 1s) = %d, %v; want 202", code, err)
		}
	})
	t.Run("stalled", func(t *testing.T) {
		t.Parallel()
		finished := make(chan struct{})
		var code int
		var err error
		go func() { code, err = patch(t, writer(t, 10, 1024, 0, 2)); close(finished) }()
		select {
		case <-finished:
		case <-time.After(bound):
			t.Fatalf("an upload that stopped sending was still held after %s", bound)
		}
		if err == nil && code < 400 {
			t.Fatalf("a stalled upload was answered %d", code)
		}
	})
	t.Run("trickling below the minimum rate", func(t *testing.T) {
		t.Parallel()
		finished := make(chan struct{})
		var code int
		var err error
		// 1 byte every 100ms: always within the per-read timeout, far below 1000 B/s.
		go func() { code, err = patch(t, writer(t, 1000, 1, 100*time.Millisecond, 0)); close(finished) }()
		select {
		case <-finished:
		case <-time.After(bound):
			t.Fatalf("an upload trickling below the minimum rate was still held after %s", bound)
		}
		if err == nil && code < 400 {
			t.Fatalf("a trickling upload was answered %d", code)
		}
	})
}

// TestUnauthenticatedConnectionsPerAddressAreCapped: one address cannot hold more than
// the cap of connections that have not authenticated; connections that made an
// authenticated request do not count, and a slot frees when a connection closes.
func TestUnauthenticatedConnectionsPerAddressAreCapped(t *testing.T) {
	const limit = 4
	inst := servertest.Start(t, func(c *config.Server) { c.Limits.UnauthenticatedConnsPerAddress = limit })
	tok := registryToken(t, inst, "cap/app")

	// Authenticated keep-alive connections, more than the cap: they do not count.
	for i := 0; i < limit+2; i++ {
		c := dialTLS(t, inst)
		fmt.Fprintf(c, "GET /v2/ HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", inst.Addr, tok)
		c.SetReadDeadline(time.Now().Add(bound))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("authenticated connection %d: %v %v", i, resp, err)
		}
		resp.Body.Close()
	}
	// Unauthenticated connections that say nothing (not even a TLS hello): the cap's worth
	// is held...
	idle := make([]net.Conn, limit)
	for i := range idle {
		c, err := net.Dial("tcp", inst.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		idle[i] = c
	}
	// ...and one more is closed at once.
	extra, err := net.Dial("tcp", inst.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	waitClosed(t, extra, extra, "a connection over the cap of unauthenticated connections")

	// Closing one frees its slot: a new connection is served again (the server notices the
	// close asynchronously, so this retries within the bound).
	idle[0].Close()
	deadline := time.Now().Add(bound)
	for {
		c, err := tls.Dial("tcp", inst.Addr, &tls.Config{RootCAs: inst.CAPool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
		if err == nil {
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", inst.Addr)
			c.SetReadDeadline(time.Now().Add(bound))
			resp, rerr := http.ReadResponse(bufio.NewReader(c), nil)
			c.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection served after a slot was freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	resp, err := inst.Client.Get(inst.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `coffer_http_connections_refused_total{reason="unauthenticated_per_address"}`) {
		t.Fatalf("/metrics lacks the refused-connection counter")
	}
}
