// Command registry benchmarks OCI registries over the Distribution API, measured in one
// run so the figures compare: push and pull of one 256 MiB blob (MB/s), and of 1,000
// blobs of 4 KiB (blobs/s) with 1 and with 8 clients, several rounds, medians printed.
//
// By default it starts Coffer in-process (plain HTTP on loopback, the filesystem driver
// with its full durability: every blob fsynced and renamed into place, SQLite with
// synchronous=FULL). It can also start CNCF Distribution (--distribution BIN) or measure
// any registry by URL (--target, with --user/--password for the Docker token flow); with
// two registries it prints the ratio of each figure (first / second).
//
//	go run ./bench/registry
//	go run ./bench/registry --distribution $(go env GOPATH)/bin/registry
//	go run ./bench/registry --target https://host:5000 --user admin --password ... --insecure
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/server"
)

type target struct {
	name       string
	url        string
	user, pass string
	client     *http.Client
	mu         sync.Mutex
	tokens     map[string]string
}

func main() {
	var (
		rounds      = flag.Int("rounds", 3, "rounds per figure (the median is printed)")
		bigMiB      = flag.Int("big-mib", 256, "size of the large blob in MiB")
		small       = flag.Int("small", 1000, "number of small blobs")
		smallKiB    = flag.Int("small-kib", 4, "size of each small blob in KiB")
		targetURL   = flag.String("target", "", "measure this registry instead of starting Coffer")
		user        = flag.String("user", "", "user name for --target (Docker token flow or Basic)")
		pass        = flag.String("password", "", "password for --target")
		insecure    = flag.Bool("insecure", false, "do not verify --target's TLS certificate")
		distBin     = flag.String("distribution", "", "also start CNCF Distribution from this binary and compare")
		target2URL  = flag.String("target2", "", "a second registry URL to compare against (same credentials flags with 2 suffix)")
		user2       = flag.String("user2", "", "user name for --target2")
		pass2       = flag.String("password2", "", "password for --target2")
		skipCoffer  = flag.Bool("no-coffer", false, "do not start Coffer (measure only --target/--distribution)")
		keepDataDir = flag.Bool("keep", false, "keep the temporary data directories")
		cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of this process (the in-process Coffer and the clients) to this file")
	)
	flag.Parse()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		must(err)
		must(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}

	var targets []*target
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	tmp, err := os.MkdirTemp("", "coffer-bench-")
	must(err)
	if !*keepDataDir {
		cleanups = append(cleanups, func() { os.RemoveAll(tmp) })
	}
	if *targetURL != "" {
		targets = append(targets, newTarget("target", *targetURL, *user, *pass, *insecure))
	} else if !*skipCoffer {
		t, stop := startCoffer(ctx, filepath.Join(tmp, "coffer"))
		cleanups = append(cleanups, stop)
		targets = append(targets, t)
	}
	if *distBin != "" {
		t, stop := startDistribution(filepath.Join(tmp, "distribution"), *distBin)
		cleanups = append(cleanups, stop)
		targets = append(targets, t)
	}
	if *target2URL != "" {
		targets = append(targets, newTarget("target2", *target2URL, *user2, *pass2, *insecure))
	}
	if len(targets) == 0 {
		fail("nothing to measure")
	}

	type figure struct {
		name, unit string
		run        func(t *target, round int) float64
	}
	bigSize := int64(*bigMiB) << 20
	smallSize := *smallKiB << 10
	bigData := map[int][]byte{}
	bigFor := func(round int) []byte {
		if b, ok := bigData[round]; ok {
			return b
		}
		b := randomBytes(uint64(round)+1, int(bigSize))
		bigData = map[int][]byte{round: b}
		return b
	}
	smallFor := func(t *target, round, clients int) [][]byte {
		out := make([][]byte, *small)
		for i := range out {
			out[i] = randomBytes(uint64(round*1_000_003+clients*7919+i)+99, smallSize)
		}
		return out
	}
	figures := []figure{
		{"push 1 blob of " + fmt.Sprint(*bigMiB) + " MiB", "MB/s", func(t *target, round int) float64 {
			data := bigFor(round)
			t.warm(ctx, fmt.Sprintf("bench/big%d", round))
			start := time.Now()
			must(t.pushBlob(ctx, fmt.Sprintf("bench/big%d", round), data, true))
			return float64(len(data)) / 1e6 / time.Since(start).Seconds()
		}},
		{"pull 1 blob of " + fmt.Sprint(*bigMiB) + " MiB", "MB/s", func(t *target, round int) float64 {
			data := bigFor(round)
			start := time.Now()
			n, err := t.pullBlob(ctx, fmt.Sprintf("bench/big%d", round), digest.FromBytes(data))
			must(err)
			if n != int64(len(data)) {
				fail(fmt.Sprintf("%s: pulled %d bytes of %d", t.name, n, len(data)))
			}
			return float64(n) / 1e6 / time.Since(start).Seconds()
		}},
	}
	for _, clients := range []int{1, 8} {
		figures = append(figures,
			figure{fmt.Sprintf("push %d blobs of %d KiB, %d client(s)", *small, *smallKiB, clients), "blobs/s", func(t *target, round int) float64 {
				blobs := smallFor(t, round, clients)
				t.warm(ctx, fmt.Sprintf("bench/small%d-%d", round, clients))
				start := time.Now()
				parallel(clients, len(blobs), func(i int) {
					must(t.pushBlob(ctx, fmt.Sprintf("bench/small%d-%d", round, clients), blobs[i], false))
				})
				return float64(len(blobs)) / time.Since(start).Seconds()
			}},
			figure{fmt.Sprintf("pull %d blobs of %d KiB, %d client(s)", *small, *smallKiB, clients), "blobs/s", func(t *target, round int) float64 {
				blobs := smallFor(t, round, clients)
				start := time.Now()
				parallel(clients, len(blobs), func(i int) {
					_, err := t.pullBlob(ctx, fmt.Sprintf("bench/small%d-%d", round, clients), digest.FromBytes(blobs[i]))
					must(err)
				})
				return float64(len(blobs)) / time.Since(start).Seconds()
			}},
		)
	}
	// Figures run in pairs (push, then pull of what was pushed); targets alternate within
	// each round so drift on a shared machine affects both alike.
	results := make([][][]float64, len(figures)) // figure, target, rounds
	for i := range results {
		results[i] = make([][]float64, len(targets))
	}
	for pair := 0; pair < len(figures); pair += 2 {
		for round := range *rounds {
			for ti, t := range targets {
				for f := pair; f < pair+2 && f < len(figures); f++ {
					v := figures[f].run(t, round)
					results[f][ti] = append(results[f][ti], v)
					fmt.Fprintf(os.Stderr, "round %d %-10s %-40s %10.1f %s\n", round+1, t.name, figures[f].name, v, figures[f].unit)
				}
			}
		}
	}
	fmt.Printf("\nmedians of %d rounds\n", *rounds)
	header := fmt.Sprintf("%-42s %-8s", "figure", "unit")
	for _, t := range targets {
		header += fmt.Sprintf(" %12s", t.name)
	}
	if len(targets) == 2 {
		header += fmt.Sprintf(" %10s", "ratio")
	}
	fmt.Println(header)
	for f, fig := range figures {
		line := fmt.Sprintf("%-42s %-8s", fig.name, fig.unit)
		var meds []float64
		for ti := range targets {
			m := median(results[f][ti])
			meds = append(meds, m)
			line += fmt.Sprintf(" %12.1f", m)
		}
		if len(targets) == 2 && meds[1] > 0 {
			line += fmt.Sprintf(" %10.2f", meds[0]/meds[1])
		}
		fmt.Println(line)
	}
	if len(targets) == 2 {
		fmt.Printf("ratio = %s / %s (above 1: %s is faster)\n", targets[0].name, targets[1].name, targets[0].name)
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func parallel(workers, n int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), byte(seed >> 32)})
	b := make([]byte, n)
	r.Read(b)
	return b
}

func must(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench:", msg)
	os.Exit(1)
}

func newTarget(name, u, user, pass string, insecure bool) *target {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	if insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	return &target{name: name, url: strings.TrimRight(u, "/"), user: user, pass: pass,
		client: &http.Client{Transport: tr, Timeout: 10 * time.Minute}, tokens: map[string]string{}}
}

// startCoffer runs Coffer in-process on loopback with plain HTTP and returns a target
// logged in as the bootstrap administrator.
func startCoffer(ctx context.Context, dir string) (*target, func()) {
	cfg := config.Defaults()
	cfg.DataDir = dir
	cfg.Listen = "127.0.0.1:0"
	cfg.PlainHTTP = true
	cfg.Registry.GCInterval = 0
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.New(ctx, cfg, log, io.Discard)
	must(err)
	must(srv.Listen())
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { srv.Serve(sctx); close(done) }()
	pw, err := os.ReadFile(filepath.Join(dir, "initial-admin-password"))
	must(err)
	t := newTarget("coffer", srv.URL(), "admin", strings.TrimSpace(string(pw)), false)
	waitReady(t.client, t.url+"/v2/")
	return t, func() { cancel(); <-done }
}

// startDistribution runs CNCF Distribution with its filesystem driver on loopback.
func startDistribution(dir, bin string) (*target, func()) {
	must(os.MkdirAll(dir, 0o700))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	addr := ln.Addr().String()
	ln.Close()
	cfgFile := filepath.Join(dir, "config.yml")
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
`, filepath.Join(dir, "data"), addr)
	must(os.WriteFile(cfgFile, []byte(cfg), 0o600))
	cmd := exec.Command(bin, "serve", cfgFile)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	must(cmd.Start())
	t := newTarget("distribution", "http://"+addr, "", "", false)
	waitReady(t.client, t.url+"/v2/")
	return t, func() { cmd.Process.Kill(); cmd.Wait() }
}

func waitReady(c *http.Client, u string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get(u)
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	fail("registry at " + u + " did not start")
}

// do sends a request, answering a Bearer challenge with a token from its realm (Basic
// credentials when given) and a Basic challenge with the credentials.
func (t *target) do(ctx context.Context, method, path, scope string, body func() io.Reader, length int64, hdr map[string]string) (*http.Response, error) {
	for attempt := 0; attempt < 2; attempt++ {
		u := path
		if !strings.HasPrefix(u, "http") {
			u = t.url + path
		}
		var b io.Reader
		if body != nil {
			b = body()
		}
		req, err := http.NewRequestWithContext(ctx, method, u, b)
		if err != nil {
			return nil, err
		}
		if body != nil {
			req.ContentLength = length
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		t.mu.Lock()
		tok := t.tokens[scope]
		t.mu.Unlock()
		switch {
		case tok == "basic":
			req.SetBasicAuth(t.user, t.pass)
		case tok != "":
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := t.client.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusUnauthorized || attempt == 1 {
			return resp, nil
		}
		ch := resp.Header.Get("WWW-Authenticate")
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err := t.authenticate(ctx, ch, scope); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("unreachable")
}

func (t *target) authenticate(ctx context.Context, challenge, scope string) error {
	if strings.HasPrefix(strings.ToLower(challenge), "basic") {
		t.mu.Lock()
		t.tokens[scope] = "basic"
		t.mu.Unlock()
		return nil
	}
	params := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(challenge, "Bearer "), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			params[k] = strings.Trim(v, `"`)
		}
	}
	q := url.Values{"service": {params["service"]}, "scope": {scope}}
	req, err := http.NewRequestWithContext(ctx, "GET", params["realm"]+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if t.user != "" {
		req.SetBasicAuth(t.user, t.pass)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: token: %d %s", t.name, resp.StatusCode, b)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		return err
	}
	if tr.Token == "" {
		tr.Token = tr.AccessToken
	}
	t.mu.Lock()
	t.tokens[scope] = tr.Token
	t.mu.Unlock()
	return nil
}

// pushBlob uploads data: POST, then PATCH (streamed) and PUT for a big blob, or a PUT
// carrying the bytes for a small one; the way docker and containerd push.
func (t *target) pushBlob(ctx context.Context, repo string, data []byte, chunked bool) error {
	scope := "repository:" + repo + ":pull,push"
	d := digest.FromBytes(data)
	resp, err := t.do(ctx, "POST", "/v2/"+repo+"/blobs/uploads/", scope, nil, 0, nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		return fmt.Errorf("%s: POST upload: %d", t.name, resp.StatusCode)
	}
	loc := t.abs(resp.Header.Get("Location"))
	body := func() io.Reader { return bytes.NewReader(data) }
	if chunked {
		resp, err = t.do(ctx, "PATCH", loc, scope, body, int64(len(data)), map[string]string{"Content-Type": "application/octet-stream"})
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 {
			return fmt.Errorf("%s: PATCH: %d", t.name, resp.StatusCode)
		}
		loc = t.abs(resp.Header.Get("Location"))
		body = nil
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	n := int64(len(data))
	if body == nil {
		n = 0
	}
	resp, err = t.do(ctx, "PUT", loc+sep+"digest="+url.QueryEscape(d.String()), scope, body, n, map[string]string{"Content-Type": "application/octet-stream"})
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		return fmt.Errorf("%s: PUT upload: %d %s", t.name, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// warm gets the tokens for repo before a figure is timed: token requests check a
// password, which is not what the figures measure.
func (t *target) warm(ctx context.Context, repo string) {
	for _, scope := range []string{"repository:" + repo + ":pull,push", "repository:" + repo + ":pull"} {
		resp, err := t.do(ctx, "HEAD", "/v2/"+repo+"/blobs/"+digest.FromString("warm").String(), scope, nil, 0, nil)
		must(err)
		resp.Body.Close()
	}
}

func (t *target) abs(loc string) string {
	if strings.HasPrefix(loc, "http") {
		return loc
	}
	return t.url + loc
}

func (t *target) pullBlob(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	resp, err := t.do(ctx, "GET", "/v2/"+repo+"/blobs/"+d.String(), "repository:"+repo+":pull", nil, 0, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("%s: GET blob: %d", t.name, resp.StatusCode)
	}
	v := d.Verifier()
	n, err := io.Copy(v, resp.Body)
	if err != nil {
		return n, err
	}
	if !v.Verified() {
		return n, fmt.Errorf("%s: pulled blob %s does not match its digest", t.name, d)
	}
	return n, nil
}
