// Package servertest starts a real Coffer server in-process on 127.0.0.1 for integration
// tests, with a fresh data directory, and gives the test what a client needs: the URL, the
// generated CA, an HTTP client that trusts it and the initial admin password.
package servertest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/server"
	"github.com/cofferhq/coffer/internal/tlsca"
)

// Instance is a running test server.
type Instance struct {
	URL           string
	Addr          string
	DataDir       string
	CAFile        string
	CAPool        *x509.CertPool
	Client        *http.Client
	AdminPassword string
	Config        config.Server
	Server        *server.Server

	stop context.CancelFunc
	done chan error
}

// Start runs a server until the test ends. mutate may adjust the configuration (it starts
// from the defaults with a temporary data dir and port 0). Pass a non-empty dataDir in
// cfg via mutate to restart on existing state.
func Start(t testing.TB, mutate func(*config.Server)) *Instance {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.ShutdownTimeout = 5 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	inst, err := StartConfig(cfg)
	if err != nil {
		t.Fatalf("start coffer: %v", err)
	}
	t.Cleanup(inst.Stop)
	return inst
}

// StartConfig runs a server with exactly cfg; the caller must Stop it.
func StartConfig(cfg config.Server) (*Instance, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("COFFER_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, log, io.Discard)
	if err != nil {
		cancel()
		return nil, err
	}
	inst := &Instance{URL: srv.URL(), Addr: srv.Addr(), DataDir: cfg.DataDir, Config: cfg, Server: srv, stop: cancel, done: make(chan error, 1)}
	go func() { inst.done <- srv.Serve(ctx) }()
	pw, _ := os.ReadFile(filepath.Join(cfg.DataDir, "initial-admin-password"))
	inst.AdminPassword = strings.TrimSpace(string(pw))
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if !cfg.PlainHTTP {
		inst.CAFile = tlsca.Files{Dir: filepath.Join(cfg.DataDir, "tls")}.CACert()
		pem, err := os.ReadFile(inst.CAFile)
		if err != nil {
			inst.Stop()
			return nil, err
		}
		inst.CAPool = x509.NewCertPool()
		inst.CAPool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: inst.CAPool}
	}
	inst.Client = &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	// Wait until the server answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := inst.Client.Get(inst.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			inst.Stop()
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return inst, nil
}

// ManagementToken logs in to the management API as the administrator with password (the
// instance's AdminPassword, or the first replica's for a replica that found the user made)
// and returns the access token.
func (i *Instance) ManagementToken(t testing.TB, password string) string {
	t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {password}, "service": {"coffer-management"}}
	resp, err := i.Client.PostForm(i.URL+"/oauth2/token", form)
	if err != nil {
		t.Fatalf("admin token from %s: %v", i.URL, err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("admin token from %s: %d %s", i.URL, resp.StatusCode, body)
	}
	return tok.AccessToken
}

// Stop shuts the server down and waits for it.
func (i *Instance) Stop() {
	if i.stop == nil {
		return
	}
	i.stop()
	i.stop = nil
	<-i.done
}
