package server

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/config"
)

// recordingHandler keeps every log record at or above debug.
type recordingHandler struct {
	mu   *sync.Mutex
	recs *[]slog.Record
}

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, r)
	return nil
}
func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordingHandler) WithGroup(string) slog.Handler      { return h }

// TestPlainHTTPProbeOnTheTLSPortIsCountedNotWarned: a plain-HTTP request on the TLS port
// (crane probes loopback registries that way) is counted in a metric and logged at debug,
// not as a warning per probe.
func TestPlainHTTPProbeOnTheTLSPortIsCountedNotWarned(t *testing.T) {
	var mu sync.Mutex
	var recs []slog.Record
	log := slog.New(recordingHandler{mu: &mu, recs: &recs})
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.ShutdownTimeout = 5 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, cfg, log, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	const probes = 3
	for i := 0; i < probes; i++ {
		c, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /v2/ HTTP/1.1\r\nHost: %s\r\n\r\n", srv.Addr())
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP on the TLS port: %v %v, want the TLS layer's 400", resp, err)
		}
	}
	// The server logs after answering: wait (bounded) until the probes are counted.
	var counted float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if counted = counterValue(t, srv, "coffer_http_plaintext_on_tls_total"); counted == probes {
			break
		}
	}
	if counted != probes {
		t.Fatalf("coffer_http_plaintext_on_tls_total = %v after %d probes", counted, probes)
	}
	mu.Lock()
	defer mu.Unlock()
	debug := 0
	for _, r := range recs {
		if !strings.Contains(r.Message, "client sent an HTTP request to an HTTPS server") {
			continue
		}
		if r.Level > slog.LevelDebug {
			t.Errorf("plain-HTTP probe logged at %s: %q", r.Level, r.Message)
		}
		debug++
	}
	if debug != probes {
		t.Errorf("%d debug lines for %d probes", debug, probes)
	}
}

func counterValue(t *testing.T, s *Server, name string) float64 {
	t.Helper()
	mfs, err := s.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
