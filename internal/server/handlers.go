package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cofferhq/coffer/internal/access/accessapi"
	"github.com/cofferhq/coffer/internal/console"
	"github.com/cofferhq/coffer/internal/encryption/encryptionapi"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/identity/identityapi"
	"github.com/cofferhq/coffer/internal/kms/kmsapi"
	"github.com/cofferhq/coffer/internal/mgmt"
	registryapi "github.com/cofferhq/coffer/internal/registry/api"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
	"github.com/cofferhq/coffer/internal/signatures/signaturesapi"
	"github.com/cofferhq/coffer/internal/token/tokenapi"
	"github.com/cofferhq/coffer/internal/trust/trustapi"
	vaultapi "github.com/cofferhq/coffer/internal/vault/api"
)

// mountHandlers is phase two of the wiring: every handler built from the concrete
// services of phase one, then mounted.
func (s *Server) mountHandlers(ctx context.Context, p *services) error {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	})
	s.mux.HandleFunc("GET /readyz", s.handleReady)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{}))

	// Tokens: the Docker registry token flow, OAuth2, the OIDC authority, /msi/token.
	tokens := tokenapi.New(tokenapi.Config{
		Identity:       p.identity,
		Tokens:         p.tokens,
		Granter:        p.granter,
		IdentityHeader: p.identityHeader,
		Limiter:        identity.NewLoginLimiter(s.cfg.LoginFailureLimit, time.Minute, nil),
		Log:            s.log,
		Metrics:        tokenapi.NewMetrics(s.metrics),
	})
	tokens.Register(s.mux)

	// The management API (/coffer/v1): every route through the one route table.
	rt, err := mgmt.NewRouter(s.mux, p.tokens)
	if err != nil {
		return err
	}
	s.mgmt = rt
	identityapi.New(p.identity, p.access, s.log.With("part", "identity")).Register(rt)
	accessapi.New(accessapi.Config{
		Service:     p.access,
		VaultExists: p.vault.VaultExists, // no access policy on a vault that does not exist
		Audit:       p.audit,
		Log:         s.log,
	}).Register(rt)
	vaultapi.NewManagement(p.vault, p.audit, p.access).Register(rt)
	encryptionapi.New(p.encryption, p.access, s.log.With("part", "encryption")).Register(rt)
	trustapi.NewManagement(p.trust, p.access, p.audit, s.log.With("part", "trust")).Register(rt)
	registryapi.MountManagement(rt, p.registry, p.access, signaturesapi.Tags{Service: p.signatures})
	signaturesapi.New(signaturesapi.Config{Service: p.signatures, Registry: p.registry, Authz: p.access, Audit: p.audit,
		Log: s.log.With("part", "signatures")}).Register(rt)
	kmsapi.New(p.kms, p.access, s.log.With("part", "kms")).Register(rt)

	// Vaults: by host name on the main listener, or on ports of their own.
	vh, err := vaultapi.New(vaultapi.Config{
		Service:      p.vault,
		Verifier:     p.tokens,
		TenantID:     p.identity.TenantID(),
		AuthorityURL: p.vaultAddrs.AuthorityURL(),
		Domain:       s.cfg.Vault.Domain,
		RateLimit:    s.cfg.Vault.RateLimit,
		Log:          s.log,
	})
	if err != nil {
		return err
	}
	ports, err := vaultapi.NewListeners(ctx, vaultapi.ListenersConfig{
		Service: p.vault, API: vh, Opener: vaultPortOpener{s}, Log: s.log})
	if err != nil {
		return err
	}
	s.hostRouters = append(s.hostRouters, ports.Route)
	// Ports another replica on the database gave (or took from) a vault: every few seconds.
	s.background = append(s.background, func(ctx context.Context) { ports.Run(ctx, vaultPortSync) })
	for _, port := range ports.StartPorts() {
		s.extraListeners = append(s.extraListeners, extraListener{addr: port.Addr, handler: port.Handler})
	}
	s.closers = append(s.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		if err := ports.Shutdown(ctx); err != nil {
			s.log.Warn("vault ports did not shut down in time", "err", err)
		}
		return nil
	})

	// The registry, /v2/. The Notary v1 trust API will share its authentication.
	auth, err := registryauth.New(registryauth.Options{
		Verifier:      p.tokens,
		Authorizer:    p.access,
		AnonymousPull: s.cfg.Registry.AnonymousPull,
		Log:           s.log.With("part", "registry"),
	})
	if err != nil {
		return err
	}
	s.mux.HandleFunc("GET /_notary_server/health", trustapi.Health)
	s.mux.Handle("/v2/", registryapi.New(registryapi.Config{
		Service: p.registry,
		Auth:    auth,
		Trust:   trustapi.New(p.trust, auth, p.access, s.log.With("part", "trust")),
		Log:     s.log.With("part", "registry"),
		Metrics: p.registry.Options().Metrics,
		Pull:    p.signatures,
	}))

	// The web console (/console/, and / for a browser): every page goes through the
	// handlers above (s.mux), with a token minted for the signed-in user.
	sessions, err := console.OpenSQLSessions(ctx, s.db)
	if err != nil {
		return err
	}
	con, err := console.New(console.Config{
		API:           s.mux,
		CheckPassword: tokens.CheckPassword,
		Tokens:        p.tokens,
		Grants:        p.granter,
		Authz:         p.access,
		Sessions:      sessions,
		Log:           s.log.With("part", "console"),
	})
	if err != nil {
		return err
	}
	con.Register(s.mux)
	s.console = con
	s.background = append(s.background, s.consoleJobs(con))
	return nil
}

// vaultPortSync is how often the vault ports are brought in line with the database.
const vaultPortSync = 5 * time.Second

// vaultPortOpener opens the per-vault ports the vault part asks for while running.
type vaultPortOpener struct{ s *Server }

// Check listens on addr and closes it at once: whether a vault can be given that port.
func (vaultPortOpener) Check(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

func (o vaultPortOpener) Open(addr string, h http.Handler) (vaultapi.PortServer, error) {
	s := o.s
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := s.newHTTPServer(s.instrument("vault", h))
	ln = s.connLimiter.wrap(ln)
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
