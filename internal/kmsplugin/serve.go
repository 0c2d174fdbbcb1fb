package kmsplugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	kmsapi "k8s.io/kms/apis/v2"
)

// SocketPath parses --listen: unix:///path/to/socket (or a bare absolute path).
func SocketPath(listen string) (string, error) {
	if strings.HasPrefix(listen, "/") {
		return listen, nil
	}
	u, err := url.Parse(listen)
	if err != nil || u.Scheme != "unix" || u.Path == "" || u.Host != "" {
		return "", fmt.Errorf("--listen %q: want unix:///path/to/kms.sock (the path the EncryptionConfiguration's endpoint names)", listen)
	}
	return u.Path, nil
}

// ListenUnix removes a stale socket file at path, listens on it and makes it 0600.
func ListenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket: refusing to remove it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another process (another kms plugin?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove the stale socket %s: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("make %s 0600: %w", path, err)
	}
	return l, nil
}

// NewGRPCServer returns a gRPC server serving p.
func NewGRPCServer(p *Plugin) *grpc.Server {
	s := grpc.NewServer()
	kmsapi.RegisterKeyManagementServiceServer(s, p)
	return s
}

// OpsHandler serves /healthz, /metrics and POST /poll (trigger a poll now) for a
// localhost port.
func (p *Plugin) OpsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		kid, err := p.Healthy()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "error: %v\n", err)
			return
		}
		fmt.Fprintf(w, "ok %s\n", kid)
	})
	mux.Handle("GET /metrics", p.o.Metrics.Handler())
	mux.HandleFunc("POST /poll", func(w http.ResponseWriter, r *http.Request) {
		p.Trigger()
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, "poll triggered")
	})
	return mux
}

// ListenOps listens on a loopback address for the ops handler.
func ListenOps(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--health-listen %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("--health-listen %q: the health and metrics port is served on a loopback address only (127.0.0.1:PORT)", addr)
	}
	return net.Listen("tcp", addr)
}

// Serve runs the plugin on l (and the ops handler on ops, when not nil) until ctx ends,
// then stops gracefully.
func (p *Plugin) Serve(ctx context.Context, l net.Listener, ops net.Listener) error {
	go p.Run(ctx)
	gs := NewGRPCServer(p)
	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(l) }()
	var hs *http.Server
	if ops != nil {
		hs = &http.Server{Handler: p.OpsHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := hs.Serve(ops); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		gs.Stop()
	}
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		hs.Shutdown(sctx) //nolint:errcheck
		cancel()
	}
	return err
}
