package server

// kmsplugin.go runs the Kubernetes KMS v2 plugin (package kmsplugin) inside `coffer serve`
// (--kms-plugin-socket, docs/kms.md "In-process mode"): one plugin per configured cluster,
// each on a unix socket of its own, acting as the identity its cluster's settings name.
// Packages kms and kmsplugin are feature packages that may not import each other, so the
// adapter that makes the cluster settings service a plugin Source and KEKs lives here.
//
// What the plugin does is exactly what `coffer kms-plugin` does over the management API,
// minus the network hop and the token: the settings and status reports go through
// kms.Service's plugin side as the cluster's identity, keys in this server's vaults are
// reached through the same kms.Service calls (kek/resolve.ForPrincipal: that identity's
// access policies or role assignments, the CofferServices network bypass, the vault's audit
// trail), and keys in other vaults through kek/resolve's REST driver as that identity.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/kms"
	"github.com/cofferhq/coffer/internal/kmsplugin"
)

// kmsClusterSource is one cluster's plugin view of this server: a kmsplugin.Source (the
// settings and the status reports, as the cluster's identity) and a kmsplugin.KEKs.
type kmsClusterSource struct {
	cluster string
	svc     *kms.Service
	ids     *identity.Service
	// local tells which vault URLs are this server's.
	local interface {
		LocalVault(ctx context.Context, vaultURL string) (string, bool, error)
	}
	// remote reaches a key in another vault as an identity (kek/resolve's REST driver).
	remote interface {
		KEK(ctx context.Context, ident, keyID string) (kek.KEK, error)
	}
	// who is the cluster's identity as of the last Settings.
	who atomic.Pointer[identity.Principal]
	// writeKey is the write key as of the last Settings, when it is in one of this server's
	// vaults: a new version of it makes the plugin poll at once.
	writeKey atomic.Pointer[localKey]
}

// localKey is a key of one of this server's vaults, by the vault's and the key's names.
type localKey struct{ vault, name string }

// writes tells whether vault/name is the cluster's write key as of the last Settings (names
// are case-insensitive).
func (c *kmsClusterSource) writes(vault, name string) bool {
	k := c.writeKey.Load()
	return k != nil && strings.EqualFold(k.vault, vault) && strings.EqualFold(k.name, name)
}

var (
	_ kmsplugin.Source = (*kmsClusterSource)(nil)
	_ kmsplugin.KEKs   = (*kmsClusterSource)(nil)
)

// identity resolves the identity the cluster's settings name now, and remembers it for the
// key calls until the next Settings.
func (c *kmsClusterSource) identity(ctx context.Context) (identity.Principal, error) {
	cl, err := c.svc.Get(ctx, c.cluster)
	if err != nil {
		return identity.Principal{}, err
	}
	p, err := c.ids.Resolve(ctx, cl.IdentityID)
	if err != nil {
		return identity.Principal{}, fmt.Errorf("the identity %s of cluster %s: %w", cl.IdentityName, c.cluster, err)
	}
	c.who.Store(&p)
	return p, nil
}

func (c *kmsClusterSource) principal(ctx context.Context) (identity.Principal, error) {
	if p := c.who.Load(); p != nil {
		return *p, nil
	}
	return c.identity(ctx)
}

// Settings reads the cluster's settings as its identity.
func (c *kmsClusterSource) Settings(ctx context.Context) (kmsplugin.Settings, error) {
	p, err := c.identity(ctx)
	if err != nil {
		return kmsplugin.Settings{}, err
	}
	st, err := c.svc.PluginSettings(ctx, p, c.cluster)
	if err != nil {
		return kmsplugin.Settings{}, err
	}
	c.writeKey.Store(nil)
	if id, err := kek.ParseKeyID(st.WriteKey); err == nil {
		if vault, local, err := c.local.LocalVault(ctx, id.Vault); err == nil && local {
			c.writeKey.Store(&localKey{vault: vault, name: id.Name})
		}
	}
	return kmsplugin.Settings{WriteKey: st.WriteKey, DecryptKeys: st.DecryptKeys}, nil
}

// Report stores the plugin's last Status as the cluster's identity.
func (c *kmsClusterSource) Report(ctx context.Context, r kmsplugin.Report) error {
	p, err := c.principal(ctx)
	if err != nil {
		return err
	}
	return c.svc.Report(ctx, p, c.cluster, kms.PluginStatus{KeyID: r.KeyID, Healthz: r.Healthz, Error: r.Error, CheckedAt: r.CheckedAt})
}

// KEK gives the driver for keyID: the cluster's key calls on this server when the key is in
// one of its vaults (whatever the cluster's keyVaultNetworkAccess: the plugin is a Coffer
// service here, so the vault's CofferServices bypass decides), the REST driver otherwise.
func (c *kmsClusterSource) KEK(ctx context.Context, keyID string) (kek.KEK, error) {
	id, err := kek.ParseKeyID(keyID)
	if err != nil {
		return nil, err
	}
	p, err := c.principal(ctx)
	if err != nil {
		return nil, &kek.Error{Op: "get", KeyID: keyID, Kind: kek.ErrForbidden, Detail: err.Error()}
	}
	_, local, err := c.local.LocalVault(ctx, id.Vault)
	if err != nil {
		return nil, &kek.Error{Op: "get", KeyID: keyID, Kind: kek.ErrUnavailable, Detail: err.Error()}
	}
	if local {
		return kmsClusterKEK{c: c, p: p}, nil
	}
	return c.remote.KEK(ctx, p.ClientID, keyID)
}

// kmsClusterKEK is a key of the cluster in this server's vaults, used as the cluster's
// identity through kms.Service (which refuses a key the cluster never used).
type kmsClusterKEK struct {
	c *kmsClusterSource
	p identity.Principal
}

func (k kmsClusterKEK) GetKey(ctx context.Context, keyID string) (kek.KeyInfo, error) {
	info, err := k.c.svc.GetKey(ctx, k.p, k.c.cluster, keyID)
	return info, asKEKError("get", keyID, err)
}

func (k kmsClusterKEK) WrapKey(ctx context.Context, keyID string, secret []byte) (string, []byte, error) {
	kid, out, err := k.c.svc.WrapKey(ctx, k.p, k.c.cluster, keyID, secret)
	return kid, out, asKEKError("wrapKey", keyID, err)
}

func (k kmsClusterKEK) UnwrapKey(ctx context.Context, kid string, wrapped []byte) ([]byte, error) {
	out, err := k.c.svc.UnwrapKey(ctx, k.p, k.c.cluster, kid, wrapped)
	return out, asKEKError("unwrapKey", kid, err)
}

// asKEKError maps the settings service's own errors (the cluster deleted, the identity no
// longer the cluster's) to kek's kinds, so the plugin answers them as it answers the vault's.
func asKEKError(op, keyID string, err error) error {
	var ke *kek.Error
	switch {
	case err == nil, errors.As(err, &ke):
		return err
	case errors.Is(err, kms.ErrForbidden):
		return &kek.Error{Op: op, KeyID: keyID, Kind: kek.ErrForbidden, Detail: err.Error()}
	case errors.Is(err, kms.ErrNotFound):
		return &kek.Error{Op: op, KeyID: keyID, Kind: kek.ErrNotFound, Detail: err.Error()}
	}
	return err
}

// kmsPlugin is one in-process plugin and its socket.
type kmsPlugin struct {
	cluster string
	path    string
	src     *kmsClusterSource
	plugin  *kmsplugin.Plugin
	ln      net.Listener
	// running is the plugin's context while the server serves (nil before and after).
	running atomic.Pointer[context.Context]
}

// kmsRefreshWait bounds how long a change of a cluster's settings made on this server waits
// for its in-process plugin's poll and self-test before it returns (the poll goes on).
const kmsRefreshWait = 5 * time.Second

// refreshKMSPlugins makes every serving in-process plugin that match selects poll and
// self-test now; with wait, it returns once they are done (kmsRefreshWait at most), so the
// change that called it answers only when the plugin's Status reports it.
func (s *Server) refreshKMSPlugins(why string, match func(*kmsPlugin) bool, wait bool) {
	var done []chan struct{}
	for _, kp := range s.kmsPlugins {
		ctxp := kp.running.Load()
		if ctxp == nil || !match(kp) {
			continue
		}
		ctx := *ctxp
		d := make(chan struct{})
		done = append(done, d)
		go func() {
			defer close(d)
			if err := kp.plugin.Refresh(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("kms plugin: poll after a change failed; Status answers the error", "cluster", kp.cluster, "change", why, "err", err)
			}
		}()
		s.log.Info("kms plugin: polling now", "cluster", kp.cluster, "change", why)
	}
	if !wait || len(done) == 0 {
		return
	}
	timeout := time.NewTimer(kmsRefreshWait)
	defer timeout.Stop()
	for _, d := range done {
		select {
		case <-d:
		case <-timeout.C:
			return
		}
	}
}

// watchKMSChanges makes the in-process plugins poll at once on a change made on this server
// (instead of at their next --kms-key-rotation-poll): a cluster's settings changed or its PMK
// rotated (kms.Service), a new version of a cluster's write key in one of this server's vaults
// (vault.Service: `coffer vault key rotate`, a rotation policy), and SIGHUP to the server
// (every plugin). Changes made on another replica of a shared metadata store are not heard:
// their plugins see them at the next poll (or SIGHUP, POST /poll).
func (s *Server) watchKMSChanges(p *services) {
	p.kms.Subscribe(func(_ context.Context, cluster string) {
		s.refreshKMSPlugins("cluster settings", func(kp *kmsPlugin) bool { return kp.cluster == cluster }, true)
	})
	// The vault calls this in the goroutine of the call that stored the version, before that
	// call's audit record: the poll runs beside it, not in it.
	p.vault.SubscribeKeyVersions(func(vault, name string) {
		s.refreshKMSPlugins("new key version", func(kp *kmsPlugin) bool { return kp.src.writes(vault, name) }, false)
	})
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	s.closers = append(s.closers, func() error { signal.Stop(hup); return nil })
	s.background = append(s.background, func(ctx context.Context) {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				s.log.Info("kms plugin: SIGHUP: every in-process plugin reads its key settings now")
				for _, kp := range s.kmsPlugins {
					kp.plugin.Trigger()
				}
			}
		}
	})
}

// setupKMSPlugins builds the in-process plugins of --kms-plugin-socket and binds their
// sockets (and --kms-plugin-health-listen), so that a bad setting fails the start: a
// cluster that is not configured on this server, a socket in use, a health address that is
// not loopback. Serving starts with the server's other listeners (Serve's background jobs)
// and stops with them, gracefully.
func (s *Server) setupKMSPlugins(ctx context.Context, p *services) error {
	socks, err := s.cfg.KMSPlugin.Plugins()
	if err != nil || len(socks) == 0 {
		return err
	}
	opsReg := prometheus.NewRegistry()
	var plugins []*kmsPlugin
	for _, sock := range socks {
		c, err := p.kms.Get(ctx, sock.Cluster)
		if err != nil {
			if errors.Is(err, kms.ErrNotFound) {
				return fmt.Errorf("--kms-plugin-socket %s: cluster %s is not configured on this server (create it first: coffer kms cluster create %s --key-management PMK --identity SP, then restart with this option)", sock.Path, sock.Cluster, sock.Cluster)
			}
			return fmt.Errorf("--kms-plugin-socket %s: cluster %s: %w", sock.Path, sock.Cluster, err)
		}
		src := &kmsClusterSource{cluster: sock.Cluster, svc: p.kms, ids: p.identity, local: p.vault, remote: p.resolver}
		if _, err := src.identity(ctx); err != nil {
			return fmt.Errorf("--kms-plugin-socket %s: cluster %s names identity %s, which this server cannot resolve: %w", sock.Path, sock.Cluster, c.IdentityName, err)
		}
		log := s.log.With("part", "kms-plugin", "cluster", sock.Cluster)
		pl, err := kmsplugin.New(kmsplugin.Options{
			Source: src, KEKs: src,
			PollInterval: s.cfg.KMSPlugin.PollInterval, SelfTestInterval: s.cfg.KMSPlugin.SelfTestInterval,
			Metrics: kmsplugin.NewMetricsFor(prometheus.Labels{"cluster": sock.Cluster}, s.metrics, opsReg),
			Log:     log,
		})
		if err != nil {
			return err
		}
		ln, err := kmsplugin.ListenUnix(sock.Path)
		if err != nil {
			return fmt.Errorf("--kms-plugin-socket: %w", err)
		}
		// Serve's graceful stop closes it (and removes the socket file); this closes it when
		// the server never served.
		s.closers = append(s.closers, func() error {
			if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				return err
			}
			return nil
		})
		plugins = append(plugins, &kmsPlugin{cluster: sock.Cluster, path: sock.Path, src: src, plugin: pl, ln: ln})
		s.log.Info("kms plugin in-process", "cluster", sock.Cluster, "socket", sock.Path, "identity", c.IdentityName)
	}
	s.kmsPlugins = plugins
	s.watchKMSChanges(p)
	for _, kp := range plugins {
		s.background = append(s.background, func(ctx context.Context) {
			kp.running.Store(&ctx)
			defer kp.running.Store(nil)
			// The socket answers at once (Status: an error until the first check passed).
			go func() {
				if err := kp.plugin.Start(ctx); err != nil && ctx.Err() == nil {
					s.log.Error("kms plugin: first key check failed; Status answers an error until a self-test passes", "cluster", kp.cluster, "err", err)
				}
			}()
			if err := kp.plugin.Serve(ctx, kp.ln, nil); err != nil {
				s.log.Error("kms plugin: serving stopped", "cluster", kp.cluster, "socket", kp.path, "err", err)
			}
		})
	}
	if addr := s.cfg.KMSPlugin.HealthListen; addr != "" {
		ln, err := kmsplugin.ListenOps(addr)
		if err != nil {
			return fmt.Errorf("--kms-plugin-health-listen: %w", err)
		}
		s.closers = append(s.closers, func() error {
			if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				return err
			}
			return nil
		})
		s.kmsHealthAddr = ln.Addr().String()
		hs := &http.Server{Handler: kmsOpsHandler(plugins, opsReg), ReadHeaderTimeout: 10 * time.Second}
		s.background = append(s.background, func(ctx context.Context) {
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					s.log.Error("kms plugin health listener stopped", "addr", addr, "err", err)
				}
			}()
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			hs.Shutdown(sctx) //nolint:errcheck // the listener is closed either way
			cancel()
			wg.Wait()
		})
	}
	return nil
}

// kmsOpsHandler is --kms-plugin-health-listen: GET /healthz (200 only while every plugin's
// last self-test passed; one line per cluster, or the standalone plugin's "ok KEY_ID" when
// there is one), GET /metrics (the plugins' metrics, labelled by cluster), POST /poll (every
// plugin polls now), and each plugin's own handler under /clusters/NAME/.
func kmsOpsHandler(plugins []*kmsPlugin, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	for _, kp := range plugins {
		mux.Handle("/clusters/"+kp.cluster+"/", http.StripPrefix("/clusters/"+kp.cluster, kp.plugin.OpsHandler()))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusOK
		var lines []string
		for _, kp := range plugins {
			kid, err := kp.plugin.Healthy()
			line := "ok " + kid
			if err != nil {
				code, line = http.StatusServiceUnavailable, fmt.Sprintf("error: %v", err)
			}
			if len(plugins) > 1 {
				line = kp.cluster + ": " + line
			}
			lines = append(lines, line)
		}
		sort.Strings(lines)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /poll", func(w http.ResponseWriter, r *http.Request) {
		for _, kp := range plugins {
			kp.plugin.Trigger()
		}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, "poll triggered")
	})
	return mux
}

// KMSPluginHealthAddr is the address --kms-plugin-health-listen is bound to ("" when off).
func (s *Server) KMSPluginHealthAddr() string { return s.kmsHealthAddr }
