// Package server assembles Coffer's parts into one HTTPS process. It holds no feature
// logic; it wires in two phases:
//
//  1. services.go builds every service (no HTTP) from the services it needs, in the order
//     of the service graph, which has no cycle;
//  2. handlers.go builds every handler from those concrete services and mounts it: the
//     management routes through the one route table (mgmt.Router), the vaults' host
//     routes and ports as the vault part asks, the registry under /v2/.
//
// server.go opens the metadata store and the main listener, sets up TLS (the local CA by
// default), serves, runs the background jobs (jobs.go) and shuts down gracefully. Adding
// a part is: build its service in services.go, its handler in handlers.go, mount it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/console"
	"github.com/cofferhq/coffer/internal/httpstatus"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/tlsca"
	vaultapi "github.com/cofferhq/coffer/internal/vault/api"
)

// Server is one running Coffer process.
type Server struct {
	cfg     config.Server
	log     *slog.Logger
	out     io.Writer // where one-time notices (the initial admin password) are printed
	db      *store.DB
	metrics *prometheus.Registry
	mux     *http.ServeMux
	// hostRouters pick a handler by the request's host (vaults are addressed by host name
	// or by a port of their own); nil means "not mine".
	hostRouters []func(r *http.Request) http.Handler
	// extraListeners are opened in Run beside the main one (for example per-vault ports).
	extraListeners []extraListener
	background     []func(ctx context.Context)
	closers        []func() error
	ready          atomic.Bool
	tlsConfig      *tls.Config
	listener       net.Listener
	httpReqs       *prometheus.CounterVec
	httpDur        *prometheus.HistogramVec
	// limits, connLimiter and the counters below hold slow and unauthenticated clients in
	// bounds (limits.go).
	limits           limits
	connLimiter      *connLimiter
	httpBodyTimeouts prometheus.Counter
	plainOnTLS       prometheus.Counter

	// parts are the services built in phase one (services.go).
	parts *services
	// mgmt mounts the management API's routes through its route table.
	mgmt *mgmt.Router
	// console is the web console (its expired sessions are swept by a job).
	console *console.Console
	// kmsPlugins are the in-process KMS v2 plugins (kmsplugin.go); kmsHealthAddr is where
	// their /healthz answers ("" when off).
	kmsPlugins    []*kmsPlugin
	kmsHealthAddr string
	// migratedBefore is the schema state before a Migrate run built the parts.
	migratedBefore map[string]int
}

type extraListener struct {
	addr    string
	handler http.Handler
}

// New builds a server from cfg: it binds the main listener (so every part knows the
// address it is reached at), builds the services, then the handlers. Nothing is served
// until Serve.
func New(ctx context.Context, cfg config.Server, log *slog.Logger, out io.Writer) (*Server, error) {
	return newServer(ctx, cfg, log, out, false)
}

func newServer(ctx context.Context, cfg config.Server, log *slog.Logger, out io.Writer, migrateOnly bool) (*Server, error) {
	if out == nil {
		out = io.Discard
	}
	s := &Server{cfg: cfg, log: log, out: out, mux: http.NewServeMux(), metrics: prometheus.NewRegistry()}
	s.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.httpReqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coffer_http_requests_total", Help: "HTTP requests by API and status code.",
	}, []string{"api", "code"})
	s.httpDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "coffer_http_request_duration_seconds", Help: "HTTP request latency by API.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"api"})
	s.httpBodyTimeouts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "coffer_http_request_body_timeouts_total", Help: "Request bodies cut by --request-body-timeout or --request-body-min-rate.",
	})
	s.plainOnTLS = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "coffer_http_plaintext_on_tls_total", Help: "Plain-HTTP requests that reached a TLS port (answered 400 by the TLS layer; logged at debug).",
	})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coffer_http_connections_refused_total", Help: "Connections closed when accepted, by reason.",
	}, []string{"reason"})
	s.metrics.MustRegister(s.httpReqs, s.httpDur, s.httpBodyTimeouts, s.plainOnTLS, refused)
	s.limits = limits{bodyTimeout: cfg.Limits.RequestBodyTimeout, minRate: cfg.Limits.RequestBodyMinRate}
	s.connLimiter = newConnLimiter(cfg.Limits.UnauthenticatedConnsPerAddress,
		refused.WithLabelValues("unauthenticated_per_address"), log)

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", cfg.DataDir, err)
	}
	if _, err := cfg.KMSPlugin.Plugins(); err != nil { // before any state is opened
		return nil, err
	}
	if cfg.PlainHTTP && !isLoopback(cfg.Listen) {
		return nil, fmt.Errorf("--plain-http is refused on %s: plain HTTP is only allowed on a loopback address", cfg.Listen)
	}
	db, err := store.Open(ctx, cfg.Metadata, filepath.Join(cfg.DataDir, "metadata.db"))
	if err != nil {
		return nil, err
	}
	s.db = db
	s.closers = append(s.closers, db.Close)
	// The main listener is bound before the parts are built: vault URLs carry its port.
	if err := s.listen(); err != nil {
		s.Close()
		return nil, err
	}

	// Replicas starting together on one database start one after the other: the first
	// initialises (migrations, the administrator, the first keys), the others wait for it
	// and find everything made.
	unlock, err := s.db.Lock(ctx, "server/start")
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("wait for another replica starting on the same database: %w", err)
	}
	if migrateOnly {
		if s.migratedBefore, err = s.db.MigrationState(ctx); err != nil {
			unlock()
			s.Close()
			return nil, err
		}
	}
	parts, err := s.buildServices(ctx)
	if err != nil {
		unlock()
		s.Close()
		return nil, err
	}
	s.parts = parts
	err = s.mountHandlers(ctx, parts)
	unlock()
	if err != nil {
		s.Close()
		return nil, err
	}
	if !migrateOnly {
		// A migration run binds nothing: the plugins' sockets belong to the serving process.
		if err := s.setupKMSPlugins(ctx, parts); err != nil {
			s.Close()
			return nil, err
		}
	}
	if !cfg.PlainHTTP && !migrateOnly {
		if err := s.setupTLS(); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Server) setupTLS() error {
	var cert tls.Certificate
	var err error
	if s.cfg.TLSCert != "" || s.cfg.TLSKey != "" {
		cert, err = tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("load --tls-cert/--tls-key: %w", err)
		}
	} else {
		cert, err = tlsca.Ensure(filepath.Join(s.cfg.DataDir, "tls"), s.certNames(), time.Now())
		if err != nil {
			return fmt.Errorf("local CA: %w", err)
		}
	}
	s.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.tlsConfig.GetConfigForClient = vaultapi.HTTP1ForVaultHosts(s.tlsConfig, s.cfg.Vault.Domain) // vault host names: HTTP/1.1
	return nil
}

// certNames are the names the generated server certificate covers.
func (s *Server) certNames() []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		names = append(names, h)
	}
	if host, _, err := net.SplitHostPort(s.cfg.Listen); err == nil && host != "" && host != "0.0.0.0" && host != "::" {
		names = append(names, host)
	}
	names = append(names, s.cfg.Hostnames...)
	if s.cfg.Vault.Domain != "" {
		names = append(names, s.cfg.Vault.Domain, "*."+s.cfg.Vault.Domain)
	}
	return names
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if !s.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"status":"starting"}`)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.db.PingContext(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"status":"metadata store unavailable"}`)
		return
	}
	io.WriteString(w, `{"status":"ready"}`)
}

// ServeHTTP routes by host first (vaults), then by path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, route := range s.hostRouters {
		if h := route(r); h != nil {
			s.instrument("vault", h).ServeHTTP(w, r)
			return
		}
	}
	s.instrument(apiOf(r.URL.Path), s.mux).ServeHTTP(w, r)
}

func apiOf(path string) string {
	switch {
	case strings.HasPrefix(path, "/v2"):
		return "registry"
	case strings.HasPrefix(path, "/coffer/"):
		return "management"
	case path == "/healthz" || path == "/readyz" || path == "/metrics":
		return "health"
	default:
		return "token"
	}
}

func (s *Server) instrument(api string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := httpstatus.NewRecorder(w)
		s.guard(api, h, rec, w, r)
		s.markAuthenticated(r, api, rec.Status())
		s.httpReqs.WithLabelValues(api, fmt.Sprint(rec.Status())).Inc()
		s.httpDur.WithLabelValues(api).Observe(time.Since(start).Seconds())
	})
}

// listen opens the main listener; New calls it before building the parts (vault URLs
// carry its port), so callers learn the address (tests use port 0) before Serve.
func (s *Server) listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	s.listener = ln
	// Serve's shutdown closes it; this closes it when the server never served.
	s.closers = append(s.closers, func() error {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	return nil
}

// Addr is the address the main listener is bound to.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// URL is the base URL of the main listener.
func (s *Server) URL() string {
	scheme := "https"
	if s.cfg.PlainHTTP {
		scheme = "http"
	}
	return scheme + "://" + s.Addr()
}

// Serve serves until ctx is cancelled, then shuts down gracefully: the listeners close,
// in-flight requests get up to ShutdownTimeout to finish, background jobs stop, and the
// stores close.
func (s *Server) Serve(ctx context.Context) error {
	bgCtx, stopBG := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	for _, job := range s.background {
		bg.Add(1)
		go func() { defer bg.Done(); job(bgCtx) }()
	}
	servers := []*http.Server{s.newHTTPServer(s)}
	listeners := []net.Listener{s.listener}
	for _, x := range s.extraListeners {
		ln, err := net.Listen("tcp", x.addr)
		if err != nil {
			stopBG()
			return fmt.Errorf("listen on %s: %w", x.addr, err)
		}
		servers = append(servers, s.newHTTPServer(s.instrument("vault", x.handler)))
		listeners = append(listeners, ln)
	}
	errc := make(chan error, len(servers))
	for i := range servers {
		go func() {
			var err error
			ln := s.connLimiter.wrap(listeners[i])
			if s.tlsConfig != nil {
				err = servers[i].ServeTLS(ln, "", "")
			} else {
				err = servers[i].Serve(ln)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	s.ready.Store(true)
	s.log.Info("coffer serving", "url", s.URL(), "data_dir", s.cfg.DataDir)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.ready.Store(false)
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil {
			s.log.Warn("shutdown did not finish in time", "err", err)
		}
	}
	stopBG()
	bg.Wait()
	if err := s.Close(); err != nil && serveErr == nil {
		serveErr = err
	}
	return serveErr
}

func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	var protocols *http.Protocols
	if s.cfg.HTTP1Only {
		// ALPN offers http/1.1 alone; an h2 preface on a plain connection is refused too.
		protocols = new(http.Protocols)
		protocols.SetHTTP1(true)
	}
	return &http.Server{
		Protocols:         protocols,
		Handler:           h,
		TLSConfig:         s.tlsConfig,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		HTTP2:             http2Settings(),
		ErrorLog:          log.New(serverErrorLog{log: s.log, plainOnTLS: s.plainOnTLS}, "", 0),
		ConnContext:       connContext,
	}
}

// Close releases the server's resources in reverse order of acquisition.
func (s *Server) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	return errors.Join(errs...)
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
