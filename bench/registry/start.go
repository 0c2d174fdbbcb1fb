package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/server"
	"github.com/cofferhq/coffer/internal/tlsca"
)

// target is one registry being measured.
type target struct {
	name       string
	url        string
	how        string // the conditions it runs under, printed with the figures
	user, pass string
	client     *http.Client
	seed       int // makes its data differ from the other targets'
	mu         sync.Mutex
	tokens     map[string]string
	pid        int // the server's process when the harness started it, for its CPU time
}

// http1 is t's registry measured with a client that speaks HTTP/1.1 over TLS, with its own
// connections and tokens.
func (t *target) http1() *target {
	tr := t.client.Transport.(*http.Transport).Clone()
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	tr.ForceAttemptHTTP2 = false
	// The clone's TLS config offers "h2" in ALPN once the original has spoken HTTP/2.
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	h := &target{name: t.name + "-h1", url: t.url, user: t.user, pass: t.pass,
		how:    strings.Replace(t.how, "HTTP/2", "HTTP/1.1 (client limited to it)", 1),
		client: &http.Client{Transport: tr, Timeout: t.client.Timeout}, tokens: map[string]string{}, pid: t.pid}
	return h
}

func newTarget(name, u, user, pass string, insecure bool, roots *x509.CertPool) *target {
	tr := http.DefaultTransport.(*http.Transport).Clone() // HTTP/2 over TLS, as real clients
	tr.MaxIdleConnsPerHost = 64
	switch {
	case insecure:
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	case roots != nil:
		tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	}
	return &target{name: name, url: strings.TrimRight(u, "/"), user: user, pass: pass, how: "given by URL",
		client: &http.Client{Transport: tr, Timeout: 10 * time.Minute}, tokens: map[string]string{}}
}

// freeAddr picks a free loopback port.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	defer ln.Close()
	return ln.Addr().String()
}

// buildCoffer builds ./cmd/coffer of this module into dir.
func buildCoffer(ctx context.Context, dir string) string {
	bin := filepath.Join(dir, "coffer-bin")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/coffer")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fail("build coffer (run the harness from the module's root, or give --coffer BIN): " + err.Error())
	}
	return bin
}

// child starts bin as a child process whose output goes to dir/log, and returns its stop.
// The stop is also registered with atExit, so the child ends when the run does, however
// it ends; calling it again does nothing.
func child(dir, bin string, args []string, env ...string) func() {
	stop, _ := childPID(dir, bin, args, env...)
	return stop
}

// childPID is child, also returning the child's process id (the harness reads its CPU time).
func childPID(dir, bin string, args []string, env ...string) (func(), int) {
	logf, err := os.Create(filepath.Join(dir, "log"))
	must(err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		logf.Close()
		fail(err.Error())
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			logf.Close()
		})
	}
	atExit(stop)
	return stop, cmd.Process.Pid
}

// startCoffer runs `coffer serve` on a fresh data directory as its users do (HTTPS with the
// local CA, token auth, encryption at rest, GC on its default schedule), or with
// --plain-http, and logs in as the bootstrap administrator.
func startCoffer(ctx context.Context, name, dir, bin string, plain bool, extra ...string) (*target, func()) {
	t, stop := runCoffer(name, dir, bin, plain, extra...)
	pw, err := os.ReadFile(filepath.Join(dir, "data", "initial-admin-password"))
	if err != nil || len(pw) == 0 {
		fail(fmt.Sprintf("%s made no administrator (%v): see %s", name, err, filepath.Join(dir, "log")))
	}
	t.user, t.pass = "admin", strings.TrimSpace(string(pw))
	return t, stop
}

// runCoffer runs `coffer serve` on data directory dir/data and waits until it is ready;
// the target has no credentials (a replica joining a database another one initialised
// makes no administrator of its own).
func runCoffer(name, dir, bin string, plain bool, extra ...string) (*target, func()) {
	must(os.MkdirAll(dir, 0o700))
	addr := freeAddr()
	args := append([]string{"serve", "--data-dir", filepath.Join(dir, "data"), "--listen", addr}, extra...)
	scheme, how := "https", "coffer serve, HTTPS (local CA, HTTP/2), token auth, encryption at rest, default GC"
	if plain {
		args = append(args, "--plain-http")
		scheme, how = "http", "coffer serve --plain-http, token auth, encryption at rest, default GC"
	}
	stop, pid := childPID(dir, bin, args)
	var roots *x509.CertPool
	if !plain {
		roots = loadRoots(filepath.Join(dir, "data", "tls", "ca.pem"), 60*time.Second)
	}
	t := newTarget(name, scheme+"://"+addr, "", "", false, roots)
	t.how = how
	t.pid = pid
	waitReady(t.client, t.url+"/readyz")
	return t, stop
}

func loadRoots(caFile string, wait time.Duration) *x509.CertPool {
	deadline := time.Now().Add(wait)
	for {
		if raw, err := os.ReadFile(caFile); err == nil {
			pool := x509.NewCertPool()
			if pool.AppendCertsFromPEM(raw) {
				return pool
			}
		}
		if time.Now().After(deadline) {
			fail("no CA certificate in " + caFile)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startInProcess runs Coffer inside this process over plain HTTP: a profiling aid.
func startInProcess(ctx context.Context, dir string) (*target, func()) {
	cfg := config.Defaults()
	cfg.DataDir = dir
	cfg.Listen = "127.0.0.1:0"
	cfg.PlainHTTP = true
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.New(ctx, cfg, log, io.Discard)
	must(err)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { srv.Serve(sctx); close(done) }()
	pw, err := os.ReadFile(filepath.Join(dir, "initial-admin-password"))
	must(err)
	t := newTarget("coffer-inproc", srv.URL(), "admin", strings.TrimSpace(string(pw)), false, nil)
	t.how = "PROFILING AID: Coffer in the harness's process, plain HTTP, token auth, encryption at rest"
	waitReady(t.client, t.url+"/readyz")
	return t, func() { cancel(); <-done }
}

// tlsFiles is a certificate for 127.0.0.1 from a local CA (internal/tlsca), for the peers.
type tlsFiles struct {
	cert, key string
	roots     *x509.CertPool
}

func makeTLS(dir string) *tlsFiles {
	_, err := tlsca.Ensure(dir, []string{"127.0.0.1", "localhost"}, time.Now())
	must(err)
	f := tlsca.Files{Dir: dir}
	return &tlsFiles{cert: f.ServerCert(), key: f.ServerKey(), roots: loadRoots(f.CACert(), 0)}
}

// startDistribution runs CNCF Distribution with its filesystem driver, TLS when tf is set,
// no auth (it has no token service of its own).
func startDistribution(dir, bin string, tf *tlsFiles) (*target, func()) {
	must(os.MkdirAll(dir, 0o700))
	addr := freeAddr()
	tlsCfg, scheme, how := "", "http", "Distribution, plain HTTP, filesystem driver, no auth"
	if tf != nil {
		tlsCfg = fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", tf.cert, tf.key)
		scheme, how = "https", "Distribution, HTTPS (HTTP/2), filesystem driver, no auth"
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, filepath.Join(dir, "data"), addr, tlsCfg)
	cfgFile := filepath.Join(dir, "config.yml")
	must(os.WriteFile(cfgFile, []byte(cfg), 0o600))
	stop := child(dir, bin, []string{"serve", cfgFile}, "OTEL_TRACES_EXPORTER=none")
	t := newTarget("distribution", scheme+"://"+addr, "", "", false, rootsOf(tf))
	t.how = how
	waitReady(t.client, t.url+"/v2/")
	return t, stop
}

// startZot runs zot with its local storage (dedupe and GC off), TLS when tf is set, no auth.
func startZot(dir, bin string, tf *tlsFiles) (*target, func()) {
	must(os.MkdirAll(dir, 0o700))
	host, port, _ := net.SplitHostPort(freeAddr())
	tlsCfg, scheme, how := "", "http", "zot, plain HTTP, local storage, no auth"
	if tf != nil {
		tlsCfg = fmt.Sprintf(`, "tls": {"cert": %q, "key": %q}`, tf.cert, tf.key)
		scheme, how = "https", "zot, HTTPS (HTTP/2), local storage, no auth"
	}
	cfg := fmt.Sprintf(`{"distSpecVersion": "1.1.1",
 "storage": {"rootDirectory": %q, "dedupe": false, "gc": false},
 "http": {"address": %q, "port": %q%s},
 "log": {"level": "error"}}`, filepath.Join(dir, "data"), host, port, tlsCfg)
	cfgFile := filepath.Join(dir, "config.json")
	must(os.WriteFile(cfgFile, []byte(cfg), 0o600))
	stop := child(dir, bin, []string{"serve", cfgFile})
	t := newTarget("zot", scheme+"://"+net.JoinHostPort(host, port), "", "", false, rootsOf(tf))
	t.how = how
	waitReady(t.client, t.url+"/v2/")
	return t, stop
}

func rootsOf(tf *tlsFiles) *x509.CertPool {
	if tf == nil {
		return nil
	}
	return tf.roots
}

func waitReady(c *http.Client, u string) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	fail("registry at " + u + " did not start")
}

// processCPU is the user + system CPU time process pid has used so far (Linux /proc), or 0.
func processCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parentheses; utime and
	// stime are the 14th and 15th fields, in clock ticks (USER_HZ, 100 on Linux).
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * (time.Second / 100)
}
