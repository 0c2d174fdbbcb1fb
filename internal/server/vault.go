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
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/token"
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
	// listeners route vault host names and say which per-vault ports to open.
	listeners *api.Listeners
}

// vaultRootKeyFile is where the vault root key lives unless configured elsewhere.
func (s *Server) vaultRootKeyFile() string {
	if s.cfg.Vault.RootKeyFile != "" {
		return s.cfg.Vault.RootKeyFile
	}
	return filepath.Join(s.cfg.DataDir, "keys", "vault-root.key")
}

// vaultAddresses are where this server's vaults answer (the main listener is bound).
func (s *Server) vaultAddresses() vault.Addresses {
	a := vault.Addresses{Scheme: "https", Domain: s.cfg.Vault.Domain, Hostnames: s.cfg.Hostnames}
	if s.cfg.PlainHTTP {
		a.Scheme = "http"
	}
	a.ListenHost, _, _ = net.SplitHostPort(s.cfg.Listen)
	if tcp, ok := s.listener.Addr().(*net.TCPAddr); ok {
		a.Port = tcp.Port
	}
	return a
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

	addrs := s.vaultAddresses()
	svc, err := vault.New(ctx, vault.Options{
		DB: s.db, Log: s.log, Audit: al, RootKey: root,
		Authorizer: s.access.authz,
		Addresses:  addrs,
		Policies:   s.access.svc,
	})
	clear(root)
	if err != nil {
		return err
	}
	s.vault.svc = svc
	// The access part refuses access policies on vaults that do not exist.
	s.access.vaultExists = svc.VaultExists
	s.vault.api, err = api.New(api.Config{
		Service:      svc,
		Verifier:     s.identity.verifier,
		TenantID:     s.identity.tenantID,
		AuthorityURL: addrs.AuthorityURL(),
		Domain:       s.cfg.Vault.Domain,
		RateLimit:    s.cfg.Vault.RateLimit,
		Log:          s.log,
	})
	if err != nil {
		return err
	}
	s.vault.listeners, err = api.NewListeners(ctx, api.ListenersConfig{
		Service: svc, API: s.vault.api, Opener: vaultPortOpener{s}, Log: s.log})
	if err != nil {
		return err
	}
	s.hostRouters = append(s.hostRouters, s.vault.listeners.Route, s.policyAuditRouter)
	for _, p := range s.vault.listeners.StartPorts() {
		s.extraListeners = append(s.extraListeners, extraListener{addr: p.Addr, handler: p.Handler})
	}

	api.NewManagement(svc, al, s.access.authz).Register(s.mux, func(next http.Handler) http.Handler {
		return mgmt.Protect(s.identity.verifier, next)
	})
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
	s.closers = append(s.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		if err := s.vault.listeners.Shutdown(ctx); err != nil {
			s.log.Warn("vault ports did not shut down in time", "err", err)
		}
		return nil
	})
	return nil
}

// vaultPortOpener opens the per-vault ports the vault part asks for while running.
type vaultPortOpener struct{ s *Server }

func (o vaultPortOpener) Open(addr string, h http.Handler) (api.PortServer, error) {
	s := o.s
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := s.newHTTPServer(s.instrument("vault", h))
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
	return srv, nil
}

// Vault is the key vault service, for in-process callers (the registry's key-encryption
// key, the KMS plugin): they call its methods with their own principal, so access checks,
// network rules (bypass for Coffer's services) and the audit trail apply.
func (s *Server) Vault() *vault.Service { return s.vault.svc }

// Audit is the audit trail any part may record into.
func (s *Server) Audit() *audit.Log { return s.vault.audit }

// policyAuditRouter records every change to a vault's access policies in the audit trail.
// The access part serves those routes; this router sees the request first (host routers
// run before path routes), lets the access part answer, and records who changed what with
// the status it answered.
func (s *Server) policyAuditRouter(r *http.Request) http.Handler {
	if r.Method != http.MethodPut && r.Method != http.MethodDelete {
		return nil
	}
	rest, ok := strings.CutPrefix(r.URL.Path, mgmt.Prefix+"/vaults/")
	if !ok {
		return nil
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[1] != "access-policies" {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		s.mux.ServeHTTP(rec, r)
		res := audit.ResultSuccess
		switch {
		case rec.code == http.StatusUnauthorized || rec.code == http.StatusForbidden:
			res = audit.ResultDenied
		case rec.code >= 300:
			res = audit.ResultFailure
		}
		a := audit.Record{Time: start, Component: "vault", Operation: "AccessPolicySet", Target: parts[0] + "/access-policies/" + parts[2],
			Resource:  "vaults/" + parts[0] + "/access-policies/" + parts[2],
			UserAgent: r.UserAgent(), Result: res, Duration: time.Since(start)}
		if r.Method == http.MethodDelete {
			a.Operation = "AccessPolicyDelete"
		}
		if res != audit.ResultSuccess {
			a.Detail = fmt.Sprintf("answered %d", rec.code)
		}
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			a.ClientAddr = host
		}
		if raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && s.identity.verifier != nil {
			if c, err := s.identity.verifier.Verify(r.Context(), raw, token.AudienceManagement); err == nil {
				p := c.Principal()
				a.PrincipalID, a.PrincipalName, a.PrincipalKind = p.ID, p.Name, string(p.Kind)
			}
		}
		s.vault.audit.Record(a)
	})
}
