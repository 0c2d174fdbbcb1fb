package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/api"
)

// vaultPart holds what the server keeps of the vault part.
type vaultPart struct {
	// svc is the key vault; in-process callers (the registry's key-encryption key, the
	// KMS plugin) call its methods directly with their own principal.
	svc *vault.Service
	// audit is the audit trail (any part may record into it).
	audit *audit.Log
	api   *api.Handler

	mu sync.Mutex
	// portVaults maps a per-vault port to its vault.
	portVaults map[int]string
	// portServers are per-vault listeners opened while running (not at start).
	portServers map[int]*http.Server
	// startPorts are the ports opened by Serve from extraListeners.
	startPorts map[int]bool
	// h1TLS is the TLS configuration of connections to vault host names (HTTP/1.1 only).
	h1Once sync.Once
	h1TLS  *tls.Config
}

// vaultRootKeyFile is where the vault root key lives unless configured elsewhere.
func (s *Server) vaultRootKeyFile() string {
	if s.cfg.Vault.RootKeyFile != "" {
		return s.cfg.Vault.RootKeyFile
	}
	return filepath.Join(s.cfg.DataDir, "keys", "vault-root.key")
}

// listenHost is the host of the main listen address ("" when it listens on all addresses).
func (s *Server) listenHost() string {
	host, _, err := net.SplitHostPort(s.cfg.Listen)
	if err != nil || host == "0.0.0.0" || host == "::" {
		return ""
	}
	return host
}

// mainPort is the port of the main listener.
func (s *Server) mainPort() string {
	addr := s.cfg.Listen
	if s.listener != nil {
		addr = s.listener.Addr().String()
	}
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// vaultURL is the URL a vault is reached at: https://NAME.<domain>[:port] by default, or
// https://HOST:PORT when the vault has a port of its own.
func (s *Server) vaultURL(v vault.Vault) string {
	scheme := "https"
	if s.cfg.PlainHTTP {
		scheme = "http"
	}
	if v.Port != 0 {
		host := s.listenHost()
		if host == "" {
			host = "localhost"
			if len(s.cfg.Hostnames) > 0 {
				host = s.cfg.Hostnames[0]
			}
		}
		return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(v.Port))
	}
	u := scheme + "://" + v.Name + "." + s.cfg.Vault.Domain
	if p := s.mainPort(); p != "" && p != "443" && p != "0" { // "0": not listening yet
		u += ":" + p
	}
	return u
}

// authorityURL is the server's main URL as clients reach it: the listen address, or for a
// wildcard listen address the first --hostname (else localhost).
func (s *Server) authorityURL() string {
	host := s.listenHost()
	if host == "" {
		host = "localhost"
		if len(s.cfg.Hostnames) > 0 {
			host = s.cfg.Hostnames[0]
		}
	}
	scheme := "https"
	if s.cfg.PlainHTTP {
		scheme = "http"
	}
	return scheme + "://" + net.JoinHostPort(host, s.mainPort())
}

// vaultTLSForClient gives connections to vault host names (SNI NAME.<vault domain>) a
// configuration that offers HTTP/1.1 only. Vault calls are small request/response pairs:
// over HTTP/2 each one pays extra goroutine hand-offs and frame writes, which measured about
// 7% of an RSA-2048 unwrap's throughput. Other names keep the main configuration (nil).
func (s *Server) vaultTLSForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	domain := strings.ToLower(s.cfg.Vault.Domain)
	if domain == "" || !strings.HasSuffix(strings.ToLower(hello.ServerName), "."+domain) {
		return nil, nil
	}
	s.vault.h1Once.Do(func() {
		c := s.tlsConfig.Clone()
		c.GetConfigForClient = nil
		c.NextProtos = []string{"http/1.1"}
		s.vault.h1TLS = c
	})
	return s.vault.h1TLS, nil
}

// mountVault wires the vault part: its services, routes and background jobs.
func (s *Server) mountVault(ctx context.Context) error {
	root, where, err := vault.LoadRootKey(s.vaultRootKeyFile(), os.Getenv(vault.RootKeyEnv))
	if err != nil {
		return err
	}
	s.log.Info("vault root key loaded", "from", where)
	al, err := audit.Open(ctx, s.db, s.log)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, al.Close)
	s.vault.audit = al
	s.vault.portVaults = map[int]string{}
	s.vault.portServers = map[int]*http.Server{}
	s.vault.startPorts = map[int]bool{}

	svc, err := vault.New(ctx, vault.Options{
		DB: s.db, Log: s.log, Audit: al, RootKey: root,
		Authorizer:    func() access.Authorizer { return s.access.authz },
		VaultURL:      s.vaultURL,
		OnVaultChange: s.vaultChanged,
	})
	clear(root)
	if err != nil {
		return err
	}
	s.vault.svc = svc
	// The access part refuses access policies on vaults that do not exist.
	s.access.vaultExists = func(ctx context.Context, name string) error {
		_, err := svc.LookupVault(ctx, strings.ToLower(name))
		if errors.Is(err, vault.ErrNotFound) {
			return fmt.Errorf("vault %q does not exist: %w", name, access.ErrNotFound)
		}
		return err
	}
	s.vault.api = api.New(api.Config{
		Service:      svc,
		Verifier:     func() authn.Verifier { return s.identity.verifier },
		TenantID:     func() string { return s.identity.tenantID },
		AuthorityURL: s.authorityURL,
		Domain:       s.cfg.Vault.Domain,
		RateLimit:    s.cfg.Vault.RateLimit,
		Log:          s.log,
	})

	// Vaults by host name on the main listener.
	suffix := "." + strings.ToLower(s.cfg.Vault.Domain)
	s.hostRouters = append(s.hostRouters, func(r *http.Request) http.Handler {
		host := strings.ToLower(r.Host)
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		name, ok := strings.CutSuffix(host, suffix)
		if !ok || suffix == "." || name == "" || strings.Contains(name, ".") {
			return nil
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.vault.api.Serve(w, r, name, false) })
	})

	// Vaults on ports of their own, for those that exist now.
	existing, err := svc.AllVaults(ctx)
	if err != nil {
		return err
	}
	for _, v := range existing {
		if v.Port == 0 {
			continue
		}
		s.vault.portVaults[v.Port] = v.Name
		s.vault.startPorts[v.Port] = true
		s.extraListeners = append(s.extraListeners, extraListener{
			addr: net.JoinHostPort(s.listenHost(), strconv.Itoa(v.Port)), handler: s.portHandler(v.Port)})
	}

	s.mountVaultManagement()
	s.background = append(s.background, func(ctx context.Context) {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			if err := svc.RunLifecycle(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("vault lifecycle run failed", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	s.closers = append(s.closers, s.closeVaultPorts)
	return nil
}

// portHandler serves whatever vault owns port now.
func (s *Server) portHandler(port int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.vault.mu.Lock()
		name := s.vault.portVaults[port]
		s.vault.mu.Unlock()
		if name == "" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error":{"code":"NotFound","message":"no vault answers on port %d any more"}}`+"\n", port)
			return
		}
		s.vault.api.Serve(w, r, name, true)
	})
}

// vaultChanged keeps per-vault ports in step with the vaults: a new port is opened at
// once, a port no vault uses any more is closed (if it was opened on the fly).
func (s *Server) vaultChanged(v vault.Vault, deleted bool) {
	s.vault.mu.Lock()
	defer s.vault.mu.Unlock()
	for port, name := range s.vault.portVaults {
		if name == v.Name && (deleted || port != v.Port) {
			delete(s.vault.portVaults, port)
			if srv := s.vault.portServers[port]; srv != nil {
				srv.Close()
				delete(s.vault.portServers, port)
			}
		}
	}
	if deleted && s.access.svc != nil {
		// A vault created again under the same name starts with no access policies.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.access.svc.DeleteVaultPolicies(ctx, v.Name); err != nil {
			s.log.Warn("access policies of a deleted vault not removed", "vault", v.Name, "err", err)
		}
		cancel()
	}
	if deleted || v.Port == 0 {
		return
	}
	s.vault.portVaults[v.Port] = v.Name
	if s.vault.startPorts[v.Port] || s.vault.portServers[v.Port] != nil {
		return
	}
	addr := net.JoinHostPort(s.listenHost(), strconv.Itoa(v.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.log.Error("vault port could not be opened", "vault", v.Name, "addr", addr, "err", err)
		return
	}
	srv := s.newHTTPServer(s.instrument("vault", s.portHandler(v.Port)))
	s.vault.portServers[v.Port] = srv
	go func() {
		var err error
		if s.tlsConfig != nil {
			err = srv.Serve(tls.NewListener(ln, s.tlsConfig))
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("vault port stopped", "addr", addr, "err", err)
		}
	}()
	s.log.Info("vault port opened", "vault", v.Name, "addr", addr)
}

func (s *Server) closeVaultPorts() error {
	s.vault.mu.Lock()
	defer s.vault.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	for port, srv := range s.vault.portServers {
		srv.Shutdown(ctx)
		delete(s.vault.portServers, port)
	}
	return nil
}

// mountVaultManagement mounts /coffer/v1/vaults... and /coffer/v1/audit.
func (s *Server) mountVaultManagement() {
	api.NewManagement(s.vault.svc, s.vault.audit, s.access.authz).Register(s.mgmt)
}

// Vault is the key vault service, for in-process callers (the registry's key-encryption
// key, the KMS plugin): they call its methods with their own principal, so access checks,
// network rules (bypass for Coffer's services) and the audit trail apply.
func (s *Server) Vault() *vault.Service { return s.vault.svc }

// Audit is the audit trail any part may record into.
func (s *Server) Audit() *audit.Log { return s.vault.audit }
