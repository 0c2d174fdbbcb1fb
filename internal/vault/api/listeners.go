package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/vault"
)

// PortServer is a listener an Opener started for a vault's own port (an *http.Server is
// one): Close stops it at once (the vault moved or went away), Shutdown gracefully (the
// server stops).
type PortServer interface {
	Close() error
	Shutdown(ctx context.Context) error
}

// Opener opens a listener on addr serving h, with the server's TLS, timeouts and metrics.
// The server implements it; the vault part says which ports to open and when. Check tells
// whether addr can be listened on now (without keeping it): the vault part asks before it
// gives a vault a port, so that a vault never claims a vaultUri that does not serve.
type Opener interface {
	Open(addr string, h http.Handler) (PortServer, error)
	Check(addr string) error
}

// Port is a listener to open when the server starts.
type Port struct {
	Addr    string
	Handler http.Handler
}

// ListenersConfig wires Listeners. Every field but Log is required.
type ListenersConfig struct {
	Service *vault.Service
	API     *Handler
	// Opener opens the ports of vaults given one while the server runs.
	Opener Opener
	Log    *slog.Logger
}

// Listeners is how the vault data planes are reached: by host name (NAME.<vault domain>)
// on the main listener (Route), and on ports of their own, those of the vaults that exist
// at start (StartPorts) and those given while running, which it opens and closes through
// the Opener as vaults change.
type Listeners struct {
	svc    *vault.Service
	api    *Handler
	opener Opener
	log    *slog.Logger
	addrs  vault.Addresses

	mu sync.Mutex
	// portVaults maps a vault's own port to the vault.
	portVaults map[int]string
	// start are the ports listed by StartPorts (the server opens those).
	start map[int]bool
	// opened are the ports opened while running.
	opened map[int]PortServer
	closed bool
}

// NewListeners reads the vaults' ports and subscribes to vault changes.
func NewListeners(ctx context.Context, c ListenersConfig) (*Listeners, error) {
	if c.Service == nil || c.API == nil || c.Opener == nil {
		return nil, errors.New("vault listeners: Service, API and Opener are required")
	}
	l := &Listeners{svc: c.Service, api: c.API, opener: c.Opener, log: c.Log, addrs: c.Service.Addresses(),
		portVaults: map[int]string{}, start: map[int]bool{}, opened: map[int]PortServer{}}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	existing, err := c.Service.AllVaults(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the vaults' ports: %w", err)
	}
	for _, v := range existing {
		if v.Port != 0 {
			l.portVaults[v.Port] = v.Name
			l.start[v.Port] = true
		}
	}
	c.Service.Subscribe(l.vaultChanged)
	c.Service.CheckPortsWith(l.checkPort)
	return l, nil
}

// checkPort tells whether vault name can be given port: a port this server holds already
// (opened at start or while running, for a vault that went away or moved) is reused as it
// is; any other must be one the opener can listen on now. The check does not keep the port
// open: vaultChanged opens it once the vault has it, so it is never opened twice.
func (l *Listeners) checkPort(_ context.Context, name string, port int) error {
	l.mu.Lock()
	owner, held, closed := l.portVaults[port], l.start[port] || l.opened[port] != nil, l.closed
	l.mu.Unlock()
	switch {
	case owner != "" && owner != name:
		return fmt.Errorf("vault %q answers on it", owner)
	case held || closed:
		return nil // ours already; or the server is stopping and opens nothing any more
	}
	if err := l.opener.Check(l.addrs.ListenAddr(port)); err != nil {
		return fmt.Errorf("the server cannot listen on %s: %w", l.addrs.ListenAddr(port), err)
	}
	return nil
}

// Route returns the handler of a request to a vault host name (NAME.<vault domain>, any
// port), or nil when the host is not one.
func (l *Listeners) Route(r *http.Request) http.Handler {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	name, ok := l.addrs.VaultHost(host)
	if !ok {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { l.api.Serve(w, r, name, false) })
}

// StartPorts are the ports of the vaults that have one now, for the server to open when it
// starts serving.
func (l *Listeners) StartPorts() []Port {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Port
	for port := range l.start {
		out = append(out, Port{Addr: l.addrs.ListenAddr(port), Handler: l.portHandler(port)})
	}
	return out
}

// portHandler serves whatever vault owns port now.
func (l *Listeners) portHandler(port int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		name := l.portVaults[port]
		l.mu.Unlock()
		if name == "" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error":{"code":"NotFound","message":"no vault answers on port %d any more"}}`+"\n", port)
			return
		}
		l.api.Serve(w, r, name, true)
	})
}

// vaultChanged keeps the ports in step with the vaults: a new port is opened at once, a
// port no vault uses any more is closed (if it was opened while running).
func (l *Listeners) vaultChanged(v vault.Vault, deleted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for port, name := range l.portVaults {
		if name == v.Name && (deleted || port != v.Port) {
			delete(l.portVaults, port)
			if srv := l.opened[port]; srv != nil {
				srv.Close()
				delete(l.opened, port)
			}
		}
	}
	if deleted || v.Port == 0 {
		return
	}
	l.portVaults[v.Port] = v.Name
	if l.closed || l.start[v.Port] || l.opened[v.Port] != nil {
		return
	}
	addr := l.addrs.ListenAddr(v.Port)
	srv, err := l.opener.Open(addr, l.portHandler(v.Port))
	if err != nil {
		l.log.Error("vault port could not be opened", "vault", v.Name, "addr", addr, "err", err)
		return
	}
	l.opened[v.Port] = srv
	l.log.Info("vault port opened", "vault", v.Name, "addr", addr)
}

// Sync opens and closes ports to match the vaults in the database. This replica's own
// changes reach it at once (Subscribe); Sync brings those another replica on the same
// database made, and retries a port that could not be opened.
func (l *Listeners) Sync(ctx context.Context) error {
	all, err := l.svc.AllVaults(ctx)
	if err != nil {
		return fmt.Errorf("read the vaults' ports: %w", err)
	}
	exists := map[string]bool{}
	for _, v := range all {
		exists[v.Name] = true
		l.vaultChanged(v, false)
	}
	l.mu.Lock()
	var gone []string
	for _, name := range l.portVaults {
		if !exists[name] {
			gone = append(gone, name)
		}
	}
	l.mu.Unlock()
	for _, name := range gone {
		l.vaultChanged(vault.Vault{Name: name}, true)
	}
	return nil
}

// Run calls Sync every interval until ctx ends.
func (l *Listeners) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := l.Sync(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("vault ports not brought up to date", "err", err)
			}
		}
	}
}

// Shutdown stops the ports opened while running, letting in-flight requests finish until
// ctx ends. Ports given later are not opened any more.
func (l *Listeners) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	l.closed = true
	opened := l.opened
	l.opened = map[int]PortServer{}
	l.mu.Unlock()
	// Outside the lock: requests in flight on these ports look their vault up under it.
	var errs []error
	for port, srv := range opened {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("vault port %d: %w", port, err))
		}
	}
	return errors.Join(errs...)
}

// HTTP1ForVaultHosts returns a GetConfigForClient for base that gives connections to vault
// host names (SNI NAME.<domain>) a configuration offering HTTP/1.1 only. Vault calls are
// small request/response pairs: over HTTP/2 each one pays extra goroutine hand-offs and
// frame writes, which measured about 7% of an RSA-2048 unwrap's throughput. Other names
// keep base (nil).
func HTTP1ForVaultHosts(base *tls.Config, domain string) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	domain = strings.ToLower(domain)
	var once sync.Once
	var h1 *tls.Config
	return func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if domain == "" || !strings.HasSuffix(strings.ToLower(hello.ServerName), "."+domain) {
			return nil, nil
		}
		once.Do(func() {
			h1 = base.Clone()
			h1.GetConfigForClient = nil
			h1.NextProtos = []string{"http/1.1"}
		})
		return h1, nil
	}
}
