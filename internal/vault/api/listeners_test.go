package api_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/token"
	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/api"
)

type allowAll struct{}

func (allowAll) Authorize(context.Context, access.Request) error { return nil }

type noTokens struct{}

func (noTokens) Verify(context.Context, string, string) (*token.Claims, error) {
	return nil, errors.New("no tokens in this test")
}

// opener records the ports the vault part asks the server to open and close.
type opener struct {
	mu     sync.Mutex
	events []string
	fail   bool
	// busy are addresses Check finds taken (by another process).
	busy map[string]bool
}

func (o *opener) Check(addr string) error {
	o.log("check " + addr)
	if o.busy[addr] {
		return errors.New("bind: address already in use")
	}
	return nil
}

func (o *opener) log(e string) { o.mu.Lock(); o.events = append(o.events, e); o.mu.Unlock() }

func (o *opener) Open(addr string, h http.Handler) (api.PortServer, error) {
	if o.fail {
		return nil, errors.New("address in use")
	}
	o.log("open " + addr)
	return &port{o: o, addr: addr, h: h}, nil
}

func (o *opener) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.events
	o.events = nil
	return e
}

type port struct {
	o    *opener
	addr string
	h    http.Handler
}

func (p *port) Close() error                       { p.o.log("close " + p.addr); return nil }
func (p *port) Shutdown(ctx context.Context) error { p.o.log("shutdown " + p.addr); return nil }

func newService(t *testing.T) *vault.Service {
	t.Helper()
	ctx := context.Background()
	db, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := vault.New(ctx, vault.Options{DB: db, RootKey: make([]byte, 32), Authorizer: allowAll{},
		Addresses: vault.Addresses{Domain: "vault.test", ListenHost: "127.0.0.1", Port: 5000}})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// TestListeners: the vault part says which ports the server opens at start, opens and
// closes ports through the server's opener as vaults change, and routes vault host names.
func TestListeners(t *testing.T) {
	ctx := vault.AsServer(context.Background())
	svc := newService(t)
	none := identity.Principal{}
	if _, err := svc.CreateVault(ctx, none, vault.Vault{Name: "atstart", Port: 7001}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateVault(ctx, none, vault.Vault{Name: "team1"}); err != nil {
		t.Fatal(err)
	}
	h, err := api.New(api.Config{Service: svc, Verifier: noTokens{}, Domain: "vault.test"})
	if err != nil {
		t.Fatal(err)
	}
	o := &opener{}
	l, err := api.NewListeners(context.Background(), api.ListenersConfig{Service: svc, API: h, Opener: o})
	if err != nil {
		t.Fatal(err)
	}

	start := l.StartPorts()
	if len(start) != 1 || start[0].Addr != "127.0.0.1:7001" {
		t.Fatalf("start ports %+v, want 127.0.0.1:7001", start)
	}

	// A vault given a port while running: opened at once; moved: the old one closed; the
	// start port is the server's, never opened twice.
	if _, err := svc.CreateVault(ctx, none, vault.Vault{Name: "later", Port: 7002}); err != nil {
		t.Fatal(err)
	}
	p := 7003
	if _, err := svc.UpdateVault(ctx, none, "later", vault.VaultUpdate{Port: &p}); err != nil {
		t.Fatal(err)
	}
	if err := svc.DeleteVault(ctx, none, "later"); err != nil {
		t.Fatal(err)
	}
	want := []string{"check 127.0.0.1:7002", "open 127.0.0.1:7002", "check 127.0.0.1:7003", "close 127.0.0.1:7002", "open 127.0.0.1:7003", "close 127.0.0.1:7003"}
	if got := o.take(); !slices.Equal(got, want) {
		t.Fatalf("opener heard %v, want %v", got, want)
	}

	// A start port whose vault went away answers that no vault is there any more.
	if err := svc.DeleteVault(ctx, none, "atstart"); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	start[0].Handler.ServeHTTP(rec, httptest.NewRequest("GET", "https://127.0.0.1:7001/keys?api-version=7.4", nil))
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "port 7001") {
		t.Fatalf("port of a deleted vault: %d %s", rec.Code, rec.Body)
	}
	if got := o.take(); len(got) != 0 {
		t.Fatalf("a start port was closed through the opener: %v", got)
	}

	// Host routing: NAME.<vault domain> on any port is the vault's data plane.
	for host, want := range map[string]bool{
		"team1.vault.test": true, "TEAM1.vault.test:5000": true, "vault.test": false,
		"a.team1.vault.test": false, "registry.example.com": false, "127.0.0.1:5000": false,
	} {
		r := httptest.NewRequest("GET", "/keys?api-version=7.4", nil)
		r.Host = host
		hh := l.Route(r)
		if (hh != nil) != want {
			t.Errorf("Route(%s) = %v, want a handler: %v", host, hh != nil, want)
			continue
		}
		if hh != nil {
			rec := httptest.NewRecorder()
			hh.ServeHTTP(rec, r)
			if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: %d, want the bearer challenge", host, rec.Code)
			}
		}
	}

	// A port that cannot be opened is logged, not fatal; at shutdown the ports opened while
	// running stop, and later vaults get none.
	o.fail = true
	if _, err := svc.CreateVault(ctx, none, vault.Vault{Name: "busy", Port: 7004}); err != nil {
		t.Fatal(err)
	}
	o.fail = false
	if _, err := svc.CreateVault(ctx, none, vault.Vault{Name: "running", Port: 7005}); err != nil {
		t.Fatal(err)
	}
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateVault(ctx, none, vault.Vault{Name: "afterwards", Port: 7006}); err != nil {
		t.Fatal(err)
	}
	if got, want := o.take(), []string{"check 127.0.0.1:7004", "check 127.0.0.1:7005", "open 127.0.0.1:7005", "shutdown 127.0.0.1:7005"}; !slices.Equal(got, want) {
		t.Fatalf("opener heard %v, want %v", got, want)
	}
}

func TestNewRefusesMissingWiring(t *testing.T) {
	svc := newService(t)
	if _, err := api.New(api.Config{Service: svc}); err == nil {
		t.Fatal("api.New accepted a config without a token verifier")
	}
	h, _ := api.New(api.Config{Service: svc, Verifier: noTokens{}})
	if _, err := api.NewListeners(context.Background(), api.ListenersConfig{Service: svc, API: h}); err == nil {
		t.Fatal("NewListeners accepted a config without an opener")
	}
}

func TestHTTP1ForVaultHosts(t *testing.T) {
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	get := api.HTTP1ForVaultHosts(base, "Vault.Test")
	base.GetConfigForClient = get
	c, err := get(&tls.ClientHelloInfo{ServerName: "team1.vault.test"})
	if err != nil || c == nil || !slices.Equal(c.NextProtos, []string{"http/1.1"}) || c.GetConfigForClient != nil || c.MinVersion != tls.VersionTLS12 {
		t.Fatalf("vault host: %+v %v", c, err)
	}
	if c, err := get(&tls.ClientHelloInfo{ServerName: "registry.example.com"}); c != nil || err != nil {
		t.Fatalf("other host got %+v %v, want the main configuration", c, err)
	}
}

// TestVaultPortMustOpen: a vault is given a port only if the server can listen on it: a
// port in use is refused with the reason (the vault is not created, or keeps its port),
// the check leaves nothing open, and a port the server holds already is reused unchecked.
func TestVaultPortMustOpen(t *testing.T) {
	ctx := vault.AsServer(context.Background())
	svc := newService(t)
	none := identity.Principal{}
	if _, err := svc.CreateVault(ctx, none, vault.Vault{Name: "atstart", Port: 7001}); err != nil {
		t.Fatal(err)
	}
	h, err := api.New(api.Config{Service: svc, Verifier: noTokens{}, Domain: "vault.test"})
	if err != nil {
		t.Fatal(err)
	}
	o := &opener{busy: map[string]bool{"127.0.0.1:7010": true}}
	if _, err := api.NewListeners(context.Background(), api.ListenersConfig{Service: svc, API: h, Opener: o}); err != nil {
		t.Fatal(err)
	}
	_, err = svc.CreateVault(ctx, none, vault.Vault{Name: "busy", Port: 7010})
	if !errors.Is(err, vault.ErrInvalid) || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "7010") {
		t.Fatalf("create on a port in use: %v, want refused with the reason", err)
	}
	if _, err := svc.LookupVault(ctx, "busy"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("the refused vault exists: %v", err)
	}
	if _, err := svc.CreateVault(ctx, none, vault.Vault{Name: "moving", Port: 7011}); err != nil {
		t.Fatal(err)
	}
	p := 7010
	if _, err := svc.UpdateVault(ctx, none, "moving", vault.VaultUpdate{Port: &p}); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("move to a port in use: %v", err)
	}
	if v, _ := svc.LookupVault(ctx, "moving"); v.Port != 7011 {
		t.Fatalf("port %d after a refused move, want 7011", v.Port)
	}
	// Updating something else does not check the port again.
	days := 30
	if _, err := svc.UpdateVault(ctx, none, "moving", vault.VaultUpdate{SoftDeleteRetentionDays: &days}); err != nil {
		t.Fatal(err)
	}
	// The start port of a vault that went away is the server's: given to another vault as
	// it is, never checked nor opened again.
	if err := svc.DeleteVault(ctx, none, "atstart"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateVault(ctx, none, vault.Vault{Name: "reuse", Port: 7001}); err != nil {
		t.Fatalf("reuse the start port: %v", err)
	}
	want := []string{"check 127.0.0.1:7010", "check 127.0.0.1:7011", "open 127.0.0.1:7011", "check 127.0.0.1:7010"}
	if got := o.take(); !slices.Equal(got, want) {
		t.Fatalf("opener heard %v, want %v", got, want)
	}
}

// TestListenersFollowOtherReplicas: two vault services on one database are two replicas;
// a port given, moved or dropped on one is opened, moved or closed on the other by Sync.
func TestListenersFollowOtherReplicas(t *testing.T) {
	ctx := vault.AsServer(context.Background())
	path := filepath.Join(t.TempDir(), "m.db")
	replica := func() *vault.Service {
		db, err := store.OpenSQLite(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		svc, err := vault.New(ctx, vault.Options{DB: db, RootKey: make([]byte, 32), Authorizer: allowAll{},
			Addresses: vault.Addresses{Domain: "vault.test", ListenHost: "127.0.0.1", Port: 5000}})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	a, b := replica(), replica()
	h, err := api.New(api.Config{Service: b, Verifier: noTokens{}, Domain: "vault.test"})
	if err != nil {
		t.Fatal(err)
	}
	o := &opener{}
	l, err := api.NewListeners(ctx, api.ListenersConfig{Service: b, API: h, Opener: o})
	if err != nil {
		t.Fatal(err)
	}
	none := identity.Principal{}
	step := func(what string, change func() error, want ...string) {
		t.Helper()
		if err := change(); err != nil {
			t.Fatal(err)
		}
		if got := o.take(); len(got) != 0 {
			t.Fatalf("%s: replica B heard %v before it synced", what, got)
		}
		if err := l.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(ctx); err != nil { // a second sync changes nothing
			t.Fatal(err)
		}
		if got := o.take(); !slices.Equal(got, want) {
			t.Fatalf("%s: replica B heard %v, want %v", what, got, want)
		}
	}
	step("created on A", func() error {
		_, err := a.CreateVault(ctx, none, vault.Vault{Name: "team", Port: 7010})
		return err
	}, "open 127.0.0.1:7010")
	p := 7011
	step("moved on A", func() error {
		_, err := a.UpdateVault(ctx, none, "team", vault.VaultUpdate{Port: &p})
		return err
	}, "close 127.0.0.1:7010", "open 127.0.0.1:7011")
	step("deleted on A", func() error { return a.DeleteVault(ctx, none, "team") }, "close 127.0.0.1:7011")

	// Run syncs on its own.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go l.Run(runCtx, 20*time.Millisecond)
	if _, err := a.CreateVault(ctx, none, vault.Vault{Name: "later", Port: 7012}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(o.take(), "open 127.0.0.1:7012") {
		if time.Now().After(deadline) {
			t.Fatal("Run did not open the port another replica gave a vault")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
