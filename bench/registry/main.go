// Command registry benchmarks OCI registries over the Distribution API the way their users
// run them, all measured in one run so the figures compare: push and pull of one 256 MiB
// blob (MB/s), and of 1,000 blobs of 4 KiB (blobs/s) with 1 and with 8 clients.
//
// By default it builds Coffer and starts it as a real `coffer serve` process: HTTPS with its
// local CA, token auth, encryption at rest and the garbage collector as by default. It can
// start CNCF Distribution (--distribution BIN) and zot (--zot BIN) beside it, with TLS
// (a certificate the harness makes; --peers-plain-http serves them without TLS), Coffer over
// plain HTTP as well (--coffer-plain-http, to see what TLS costs), or measure any registry
// by URL (--target, --target2).
//
// Each round runs every registry once per figure, in an order that rotates from round to
// round, so drift on a shared machine affects all alike. It prints, per figure, each
// registry's median [min–max] and, for every registry after the first, the ratio of the
// first to it paired per round (round r of the first ÷ round r of the other), median
// [min–max], and the ratios of pairs named below. Children, servers and temporary
// directories are removed even when a start or a figure fails.
//
// --postgres starts PostgreSQL (internal/store/pgtest's initdb + pg_ctl, fsync on) and
// measures Coffer with its metadata there (coffer-pg, against the SQLite of coffer); with
// --versitygw (or --blob-store) also one replica on PostgreSQL + S3 (coffer-pg-s3) and two
// replicas on one database and bucket behind a round-robin HTTPS proxy (coffer-pg-s3-x2),
// with the ratio of the one to the two.
//
// --in-process runs Coffer inside this process over plain HTTP instead: a profiling aid
// (with --cpuprofile) whose figures are not what users see.
//
//	go run ./bench/registry --distribution "$(go env GOPATH)/bin/registry" --zot /path/to/zot
//	go run ./bench/registry --coffer-plain-http
//	go run ./bench/registry --figures small8 --rounds 1 --coffer-plain-http
//	go run ./bench/registry --figures big --coffer-plain-http --coffer-http1
//	go run ./bench/registry --versitygw "${COFFER_TOOLS:-$HOME/.cache/coffer-tools}/bin/versitygw"
//	go run ./bench/registry --versitygw "${COFFER_TOOLS:-$HOME/.cache/coffer-tools}/bin/versitygw" --postgres
//	go run ./bench/registry --no-coffer --target https://host:5000 --user admin --password ... --insecure
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

func main() { os.Exit(run()) }

// benchError is how must and fail stop the run: run recovers it, so every cleanup
// registered before still runs.
type benchError struct{ msg string }

func run() (code int) {
	var (
		rounds      = flag.Int("rounds", 3, "rounds per figure (medians and ranges are printed)")
		bigMiB      = flag.Int("big-mib", 256, "size of the large blob in MiB")
		small       = flag.Int("small", 1000, "number of small blobs")
		smallKiB    = flag.Int("small-kib", 4, "size of each small blob in KiB")
		cofferBin   = flag.String("coffer", "", "coffer binary to run as `coffer serve` (default: go build ./cmd/coffer)")
		skipCoffer  = flag.Bool("no-coffer", false, "do not start Coffer (measure only the other registries)")
		cofferPlain = flag.Bool("coffer-plain-http", false, "also start a second `coffer serve` with --plain-http (what TLS costs)")
		inProcess   = flag.Bool("in-process", false, "profiling aid: run Coffer in this process over plain HTTP instead of `coffer serve`")
		distBin     = flag.String("distribution", "", "also start CNCF Distribution from this binary")
		zotBin      = flag.String("zot", "", "also start zot from this binary")
		peersPlain  = flag.Bool("peers-plain-http", false, "serve Distribution and zot over plain HTTP instead of TLS")
		targetURL   = flag.String("target", "", "also measure this registry (Docker token flow or Basic with --user/--password)")
		user        = flag.String("user", "", "user name for --target")
		pass        = flag.String("password", "", "password for --target")
		target2URL  = flag.String("target2", "", "also measure a second registry URL")
		user2       = flag.String("user2", "", "user name for --target2")
		pass2       = flag.String("password2", "", "password for --target2")
		insecure    = flag.Bool("insecure", false, "do not verify the TLS certificates of --target and --target2")
		keepDataDir = flag.Bool("keep", false, "keep the temporary data directories")
		cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of this process (the clients, and Coffer with --in-process)")
		blobStore   = flag.String("blob-store", "", "also start a `coffer serve --blob-store URL` (s3://BUCKET[/PREFIX]; its --s3-* flags with --blob-store-flag)")
		versitygw   = flag.String("versitygw", "", "also start a `coffer serve` on S3: versitygw from this binary on a temporary directory")
		cofferH1    = flag.Bool("coffer-http1", false, "also measure the HTTPS coffer with a client that speaks HTTP/1.1 over TLS (what HTTP/2 costs the client)")
		postgres    = flag.Bool("postgres", false, "also start PostgreSQL (initdb + pg_ctl of Debian's postgresql or $COFFER_PG_BIN, temporary directory, free port, fsync on) and measure coffer-pg (PostgreSQL + filesystem); with --versitygw or --blob-store also coffer-pg-s3 (one replica on PostgreSQL + S3) and coffer-pg-s3-x2 (two replicas on one database and bucket behind a round-robin proxy)")
		readBuf     = flag.Int("read-buffer", 0, "bytes per Read of a pulled blob's body (default: io.Copy's 32 KiB, as go-containerregistry and oras-go read; 1048576 reads as containerd's content copy does)")
		only        = flag.String("figures", "", "run only these figure pairs, comma-separated: big, small1, small8 (default: all)")
		blobFlags   []string
	)
	flag.Func("blob-store-flag", "a flag for the --blob-store coffer, e.g. --blob-store-flag=--s3-endpoint=http://127.0.0.1:7070 (repeatable)", func(v string) error {
		blobFlags = append(blobFlags, v)
		return nil
	})
	flag.Parse()
	if *readBuf < 0 {
		fmt.Fprintln(os.Stderr, "registry bench: --read-buffer must be 0 (io.Copy's) or a size in bytes")
		return 2
	}
	pullBuffer = *readBuf

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer runAtExit()
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(benchError)
			if !ok {
				panic(r)
			}
			fmt.Fprintln(os.Stderr, "bench:", e.msg)
			code = 1
		}
	}()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		must(err)
		must(pprof.StartCPUProfile(f))
		atExit(pprof.StopCPUProfile)
	}
	tmp, err := os.MkdirTemp("", "coffer-bench-")
	must(err)
	atExit(func() {
		if *keepDataDir {
			fmt.Fprintln(os.Stderr, "data kept in", tmp)
			return
		}
		os.RemoveAll(tmp)
	})

	var targets []*target
	// pairs are ratios printed beside those of the first target to each other one.
	var pairs [][2]int
	add := func(t *target, stop func()) {
		atExit(stop)
		targets = append(targets, t)
	}
	if !*skipCoffer {
		if *inProcess {
			add(startInProcess(ctx, filepath.Join(tmp, "coffer-in-process")))
		} else {
			bin := *cofferBin
			if bin == "" {
				bin = buildCoffer(ctx, tmp)
			}
			t, stop := startCoffer(ctx, "coffer", filepath.Join(tmp, "coffer"), bin, false)
			add(t, stop)
			if *cofferH1 {
				targets = append(targets, t.http1())
			}
			if *cofferPlain {
				add(startCoffer(ctx, "coffer-plain", filepath.Join(tmp, "coffer-plain"), bin, true))
			}
			if *versitygw != "" {
				url, flags, stop := startVersitygw(filepath.Join(tmp, "versitygw"), *versitygw)
				atExit(stop)
				*blobStore, blobFlags = url, append(flags, blobFlags...)
			}
			if *blobStore != "" {
				t, stop := startCoffer(ctx, "coffer-s3", filepath.Join(tmp, "coffer-s3"), bin, false, append([]string{"--blob-store", *blobStore}, blobFlags...)...)
				t.how += ", blob store " + *blobStore
				add(t, stop)
			}
			if *postgres {
				pg := startPostgres()
				t, stop := startCoffer(ctx, "coffer-pg", filepath.Join(tmp, "coffer-pg"), bin, false, postgresFlags(ctx, pg)...)
				t.how += ", metadata in PostgreSQL (same machine, fsync on)"
				add(t, stop)
				if *blobStore != "" {
					url := siblingStore(*blobStore, "pg")
					t, stop := startCoffer(ctx, "coffer-pg-s3", filepath.Join(tmp, "coffer-pg-s3"), bin, false,
						slices.Concat(postgresFlags(ctx, pg), []string{"--blob-store", url}, blobFlags)...)
					t.how += ", one replica, metadata in PostgreSQL, blob store " + url
					add(t, stop)
					url = siblingStore(*blobStore, "x2")
					t2, stop2 := startReplicas(ctx, "coffer-pg-s3-x2", filepath.Join(tmp, "coffer-pg-s3-x2"), bin,
						slices.Concat(postgresFlags(ctx, pg), []string{"--blob-store", url}, blobFlags)...)
					t2.how += ", both on one PostgreSQL database and blob store " + url
					add(t2, stop2)
					pairs = append(pairs, [2]int{len(targets) - 2, len(targets) - 1}) // one replica ÷ two
				}
			}
		}
	}
	var peerTLS *tlsFiles
	if (*distBin != "" || *zotBin != "") && !*peersPlain {
		peerTLS = makeTLS(filepath.Join(tmp, "peer-tls"))
	}
	if *distBin != "" {
		add(startDistribution(filepath.Join(tmp, "distribution"), *distBin, peerTLS))
	}
	if *zotBin != "" {
		add(startZot(filepath.Join(tmp, "zot"), *zotBin, peerTLS))
	}
	if *targetURL != "" {
		targets = append(targets, newTarget("target", *targetURL, *user, *pass, *insecure, nil))
	}
	if *target2URL != "" {
		targets = append(targets, newTarget("target2", *target2URL, *user2, *pass2, *insecure, nil))
	}
	if *postgres && (*skipCoffer || *inProcess) {
		fail("--postgres measures `coffer serve` processes: drop --no-coffer and --in-process")
	}
	if len(targets) == 0 {
		fail("nothing to measure")
	}
	for i, t := range targets {
		t.seed = i
		fmt.Fprintf(os.Stderr, "measuring %-14s %s (%s)\n", t.name, t.url, t.how)
	}

	figures := makeFigures(ctx, int64(*bigMiB)<<20, *small, *smallKiB<<10)
	if *only != "" {
		figures = selectFigures(figures, *only)
	}
	// results[figure][target][round]
	results := make([][][]float64, len(figures))
	for i := range results {
		results[i] = make([][]float64, len(targets))
		for j := range results[i] {
			results[i][j] = make([]float64, *rounds)
		}
	}
	// Figures run in pairs (push, then pull of what was pushed); the order of the
	// registries rotates from round to round.
	for pair := 0; pair < len(figures); pair += 2 {
		for round := range *rounds {
			for k := range targets {
				ti := (k + round) % len(targets)
				t := targets[ti]
				for f := pair; f < pair+2 && f < len(figures); f++ {
					if ctx.Err() != nil {
						fail("interrupted")
					}
					cpu0 := processCPU(t.pid)
					v := figures[f].run(t, round)
					results[f][ti][round] = v
					cpu := ""
					if t.pid != 0 {
						// The server's own CPU time (user + system) over the figure, per
						// operation: a figure that does not depend on the machine's load.
						cpu = fmt.Sprintf("  server CPU %.2f ms/op", (processCPU(t.pid)-cpu0).Seconds()*1e3/float64(figures[f].ops))
					}
					fmt.Fprintf(os.Stderr, "round %d %-14s %-42s %10.1f %s%s\n", round+1, t.name, figures[f].name, v, figures[f].unit, cpu)
				}
			}
		}
	}
	printResults(figures, targets, results, pairs)
	return 0
}

// selectFigures keeps the pairs (push, then pull) named in a comma-separated list of big,
// small1 and small8, in their usual order.
func selectFigures(all []figure, list string) []figure {
	keys := []string{"big", "small1", "small8"}
	want := map[string]bool{}
	for _, k := range strings.Split(list, ",") {
		k = strings.TrimSpace(k)
		if !slices.Contains(keys, k) {
			fail(fmt.Sprintf("--figures: unknown figure %q (known: %s)", k, strings.Join(keys, ", ")))
		}
		want[k] = true
	}
	var out []figure
	for i, k := range keys {
		if want[k] {
			out = append(out, all[2*i:2*i+2]...)
		}
	}
	return out
}

type figure struct {
	name, unit string
	ops        int // operations per run (blobs), for the server's CPU time per operation
	run        func(t *target, round int) float64
}

func makeFigures(ctx context.Context, bigSize int64, small, smallSize int) []figure {
	var mu sync.Mutex
	bigData := map[int][]byte{}
	// The data differ per registry (t.seed), so two targets on one server (--coffer-http1)
	// each store their own blobs instead of finding the other's.
	bigFor := func(t *target, round int) []byte {
		mu.Lock()
		defer mu.Unlock()
		key := round*1000 + t.seed
		if b, ok := bigData[key]; ok {
			return b
		}
		b := randomBytes(uint64(key)+1, int(bigSize))
		bigData = map[int][]byte{key: b}
		return b
	}
	smallFor := func(t *target, round, clients int) [][]byte {
		out := make([][]byte, small)
		for i := range out {
			out[i] = randomBytes(uint64(t.seed*7_000_001+round*1_000_003+clients*7919+i)+99, smallSize)
		}
		return out
	}
	figures := []figure{
		{fmt.Sprintf("push 1 blob of %d MiB", bigSize>>20), "MB/s", 1, func(t *target, round int) float64 {
			data := bigFor(t, round)
			repo := fmt.Sprintf("bench/big%d", round)
			t.warm(ctx, repo)
			start := time.Now()
			must(t.pushBlob(ctx, repo, data, true))
			return float64(len(data)) / 1e6 / time.Since(start).Seconds()
		}},
		{fmt.Sprintf("pull 1 blob of %d MiB", bigSize>>20), "MB/s", 1, func(t *target, round int) float64 {
			data := bigFor(t, round)
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
		name := fmt.Sprintf("%d blobs of %d KiB, %d client(s)", small, smallSize>>10, clients)
		figures = append(figures,
			figure{"push " + name, "blobs/s", small, func(t *target, round int) float64 {
				blobs := smallFor(t, round, clients)
				repo := fmt.Sprintf("bench/small%d-%d", round, clients)
				t.warm(ctx, repo)
				start := time.Now()
				parallel(clients, len(blobs), func(i int) { must(t.pushBlob(ctx, repo, blobs[i], false)) })
				return float64(len(blobs)) / time.Since(start).Seconds()
			}},
			figure{"pull " + name, "blobs/s", small, func(t *target, round int) float64 {
				blobs := smallFor(t, round, clients)
				repo := fmt.Sprintf("bench/small%d-%d", round, clients)
				start := time.Now()
				parallel(clients, len(blobs), func(i int) {
					_, err := t.pullBlob(ctx, repo, digest.FromBytes(blobs[i]))
					must(err)
				})
				return float64(len(blobs)) / time.Since(start).Seconds()
			}},
		)
	}
	return figures
}

// printResults prints each registry's median [min–max] per figure and, for each registry
// after the first and for each of pairs, the first's figure divided by its figure, paired
// per round.
func printResults(figures []figure, targets []*target, results [][][]float64, extra [][2]int) {
	var pairs [][2]int
	for ti := 1; ti < len(targets); ti++ {
		pairs = append(pairs, [2]int{0, ti})
	}
	pairs = append(pairs, extra...)
	rounds := len(results[0][0])
	fmt.Printf("\n%d rounds; each cell: median [min–max]\n", rounds)
	header := fmt.Sprintf("%-42s %-8s", "figure", "unit")
	for _, t := range targets {
		header += fmt.Sprintf(" %-24s", t.name)
	}
	for _, p := range pairs {
		header += fmt.Sprintf(" %-28s", targets[p[0]].name+" ÷ "+targets[p[1]].name)
	}
	fmt.Println(header)
	for f, fig := range figures {
		line := fmt.Sprintf("%-42s %-8s", fig.name, fig.unit)
		for ti := range targets {
			line += fmt.Sprintf(" %-24s", spread(results[f][ti], "%.1f"))
		}
		for _, p := range pairs {
			var ratios []float64
			for r := range rounds {
				if d := results[f][p[1]][r]; d > 0 {
					ratios = append(ratios, results[f][p[0]][r]/d)
				}
			}
			line += fmt.Sprintf(" %-28s", spread(ratios, "%.2f"))
		}
		fmt.Println(line)
	}
	if len(pairs) > 0 {
		fmt.Println("ratios A ÷ B above 1: A is faster; paired per round (round r of A ÷ round r of B)")
	}
	fmt.Println("\nconditions:")
	if pullBuffer > 0 {
		fmt.Printf("  pulled bodies read %d bytes at a time (--read-buffer)\n", pullBuffer)
	} else {
		fmt.Println("  pulled bodies read by io.Copy, 32 KiB at a time")
	}
	for _, t := range targets {
		fmt.Printf("  %-16s %s\n", t.name, t.how)
	}
}

// spread formats the median and the range of v.
func spread(v []float64, format string) string {
	if len(v) == 0 {
		return "-"
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", m, s[0], s[len(s)-1])
}

// parallel runs fn(0..n-1) on workers goroutines. A worker that fails (must, fail) stops
// the feeding; the failure is raised again in the caller once all workers are done.
func parallel(workers, n int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	done := make(chan struct{})
	var once sync.Once
	var failure any
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					once.Do(func() { failure = r; close(done) })
				}
			}()
			for i := range next {
				fn(i)
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-done:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if failure != nil {
		panic(failure)
	}
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

func fail(msg string) { panic(benchError{msg: msg}) }
