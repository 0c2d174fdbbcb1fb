package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/vault"
)

// exitFuncs run when run returns, the last registered first: children, servers and
// temporary directories go also when a start or a figure fails.
var exitFuncs []func()

func atExit(f func()) { exitFuncs = append(exitFuncs, f) }

func runAtExit() {
	for i := len(exitFuncs) - 1; i >= 0; i-- {
		exitFuncs[i]()
	}
	exitFuncs = nil
}

// startPostgres starts a PostgreSQL server (internal/store/pgtest's initdb + pg_ctl on a
// temporary directory and a free port of 127.0.0.1) with fsync on, as in production, and
// removes it when the run ends.
func startPostgres() *pgtest.Server {
	pg, err := pgtest.Launch(pgtest.LaunchOptions{Durable: true})
	must(err)
	atExit(func() {
		if err := pg.Shutdown(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: stop PostgreSQL:", err)
		}
	})
	return pg
}

// postgresFlags makes a fresh database on pg and returns the flags of a coffer that keeps
// its metadata there.
func postgresFlags(ctx context.Context, pg *pgtest.Server) []string {
	db, err := pg.CreateDatabase(ctx)
	must(err)
	return []string{"--metadata", pg.URL(db)}
}

// siblingStore is the blob-store URL s3://BUCKET/PREFIX with PREFIX-name as its prefix
// (s3://BUCKET/name without a prefix): a store of its own in the same bucket, beside the
// other's objects and not below them.
func siblingStore(u, name string) string {
	rest, ok := strings.CutPrefix(u, "s3://")
	if !ok {
		fail("--blob-store " + u + ": not an s3:// URL")
	}
	bucket, prefix, _ := strings.Cut(strings.TrimRight(rest, "/"), "/")
	if prefix == "" {
		return "s3://" + bucket + "/" + name
	}
	return "s3://" + bucket + "/" + prefix + "-" + name
}

// startReplicas runs two `coffer serve` replicas on one database and one blob store (the
// flags in shared), each with its own data directory and its own copy of one vault root
// key (so each keeps its own audit checkpoint), behind a round-robin HTTPS reverse proxy
// (net/http/httputil, HTTP/2 on both sides, in this process) that keeps the client's Host
// as a load balancer does. The target is the proxy.
func startReplicas(ctx context.Context, name, dir, bin string, shared ...string) (*target, func()) {
	must(os.MkdirAll(dir, 0o700))
	keys := [2]string{filepath.Join(dir, "a-key", "vault-root.key"), filepath.Join(dir, "b-key", "vault-root.key")}
	for _, k := range keys {
		must(os.MkdirAll(filepath.Dir(k), 0o700))
	}
	root, _, err := vault.LoadRootKeyWith(ctx, keys[0], "", nil, false) // makes the key
	must(err)
	clear(root)
	raw, err := os.ReadFile(keys[0])
	must(err)
	must(os.WriteFile(keys[1], raw, 0o600))

	// A first (it makes the administrator), then B on what A initialised.
	a, stopA := startCoffer(ctx, name+"-a", filepath.Join(dir, "a"), bin, false, slices.Concat(shared, []string{"--vault-root-key-file", keys[0]})...)
	b, stopB := runCoffer(name+"-b", filepath.Join(dir, "b"), bin, false, slices.Concat(shared, []string{"--vault-root-key-file", keys[1]})...)

	backends := make([]*url.URL, 2)
	trusted := x509.NewCertPool()
	for i, r := range []*target{a, b} {
		backends[i], err = url.Parse(r.url)
		must(err)
		raw, err := os.ReadFile(filepath.Join(dir, string("ab"[i]), "data", "tls", "ca.pem"))
		must(err)
		trusted.AppendCertsFromPEM(raw)
	}
	var next atomic.Int64
	var hits [2]atomic.Int64
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			i := int(next.Add(1) % 2)
			hits[i].Add(1)
			pr.SetURL(backends[i])
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: trusted}, ForceAttemptHTTP2: true,
			MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second},
	}
	tf := makeTLS(filepath.Join(dir, "proxy-tls"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, tf.cert, tf.key) }()
	var once sync.Once
	stopProxy := func() {
		once.Do(func() {
			srv.Close()
			if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintln(os.Stderr, "bench: proxy:", err)
			}
			fmt.Fprintf(os.Stderr, "%s: the proxy sent %d requests to replica a and %d to replica b\n", name, hits[0].Load(), hits[1].Load())
		})
	}
	atExit(stopProxy)

	t := newTarget(name, "https://"+ln.Addr().String(), a.user, a.pass, false, tf.roots)
	t.how = "two coffer serve replicas (HTTPS, token auth, encryption at rest, default GC) behind a round-robin HTTPS reverse proxy (Go net/http/httputil in the harness's process, HTTP/2 both sides)"
	waitReady(t.client, t.url+"/readyz")
	return t, func() { stopProxy(); stopB(); stopA() }
}
