package server_test

import (
	"crypto/tls"
	"net/http"
	"testing"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/servertest"
)

// TestHTTP1Only: --http1-only makes the server offer HTTP/1.1 alone in ALPN, so a client
// that offers h2 first (as every Go client does) speaks HTTP/1.1; by default the same client
// gets h2.
func TestHTTP1Only(t *testing.T) {
	negotiated := func(t *testing.T, inst *servertest.Instance, addr string) string {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: inst.CAPool, ServerName: "127.0.0.1", NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().NegotiatedProtocol
	}
	def := servertest.Start(t, nil)
	if p := negotiated(t, def, def.Addr); p != "h2" {
		t.Fatalf("default server negotiated %q, want h2", p)
	}
	only := servertest.Start(t, func(c *config.Server) { c.HTTP1Only = true })
	if p := negotiated(t, only, only.Addr); p != "http/1.1" {
		t.Fatalf("--http1-only server negotiated %q, want http/1.1", p)
	}
	// A real Go client (HTTP/2-capable transport) is served over HTTP/1.1 and works.
	resp, err := only.Client.Get(only.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /v2/ over %s answered %d, want HTTP/1.1 401", resp.Proto, resp.StatusCode)
	}
}
