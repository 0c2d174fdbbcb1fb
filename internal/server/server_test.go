package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/servertest"
)

func TestReadyzOverHTTPSWithGeneratedCA(t *testing.T) {
	inst := servertest.Start(t, nil)
	if !strings.HasPrefix(inst.URL, "https://") {
		t.Fatalf("default server URL %s is not HTTPS", inst.URL)
	}
	for _, path := range []string{"/readyz", "/healthz", "/metrics"} {
		resp, err := inst.Client.Get(inst.URL + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		if path == "/metrics" && !strings.Contains(string(body), "coffer_http_requests_total") {
			t.Fatalf("metrics lack coffer_http_requests_total")
		}
	}
	// A client that does not trust the generated CA must be refused.
	if _, err := http.Get(inst.URL + "/readyz"); err == nil {
		t.Fatal("an untrusting client connected: TLS is not verified against the local CA")
	}
}

func TestPlainHTTPRefusedOffLoopback(t *testing.T) {
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "0.0.0.0:0"
	cfg.PlainHTTP = true
	if _, err := servertest.StartConfig(cfg); err == nil || !strings.Contains(err.Error(), "plain-http") {
		t.Fatalf("plain HTTP on 0.0.0.0 must be refused, got %v", err)
	}
}
