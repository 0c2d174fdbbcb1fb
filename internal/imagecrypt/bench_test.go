package imagecrypt_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/containers/ocicrypt"
	encconfig "github.com/containers/ocicrypt/config"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/cofferhq/coffer/internal/imagecrypt"
)

// The benchmarks compare Coffer end to end (imagecrypt.Encrypt/Decrypt, OCI layout to OCI
// layout: the source digest checked, the new blob digested, decryption verified before
// release, the layout fsync'd once) with the ocicrypt library called directly on the same
// blob files (EncryptLayer/DecryptLayer streamed with 4 MiB buffers to a file fsync'd once:
// no digest, no verification, one layer after another).
//
// Both read the same source files and write new files into the same directory, which is in
// memory (/dev/shm when it exists; COFFER_BENCH_DIR overrides it, e.g. a disk directory to
// see what the disk adds): so the figure is the work of encryption, not the disk's
// writeback of 256 MiB files, which made the baseline alone swing 236–479 MB/s between runs
// on local disk. Each round runs both once, in an order that alternates from round to round,
// after a warm-up round that is not counted (it pays the page faults of a fresh heap and of
// new tmpfs pages); the garbage collector runs before each contender. The ratio is paired
// per round (ocicrypt's time ÷ Coffer's in the same round: above 1, Coffer is faster).
//
//	go test -run '^$' -bench 'Layer256MiB|Image4x64MiB' -benchtime=7x ./internal/imagecrypt/
//
// Reported per benchmark: ratio median [min–max] (also as metrics), each one's MB/s, CPU
// ns per byte (getrusage, user+system of every thread) and cores (CPU time ÷ wall time: how
// far the pipeline spreads a layer over the machine's cores).

// benchLayers writes an image of n uncompressed layers of size random bytes to dir and
// returns its reference and the layers' descriptors.
func benchLayers(b *testing.B, dir string, n, size int) (string, []ocispec.Descriptor) {
	b.Helper()
	var layers [][]byte
	var descs []ocispec.Descriptor
	for range n {
		l := make([]byte, size)
		rand.Read(l)
		layers = append(layers, l)
		descs = append(descs, content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayer, l))
	}
	return plainLayout(b, dir, layers), descs
}

// benchDir is an empty directory for the benchmark's files, removed at the end.
func benchDir(b *testing.B) string {
	b.Helper()
	parent := os.Getenv("COFFER_BENCH_DIR")
	if parent == "" {
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			parent = "/dev/shm"
		}
	}
	if parent == "" {
		return b.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "coffer-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// benchImage is an image in a plain and an encrypted layout, and what ocicrypt needs to
// process its layers directly.
type benchImage struct {
	dir, priv, pub string
	plainRef       string
	encRef         string
	plainBlobs     []string
	encBlobs       []string
	plainDescs     []ocispec.Descriptor
	encDescs       []ocispec.Descriptor
	ec             *encconfig.EncryptConfig
	dc             *encconfig.DecryptConfig
}

func newBenchImage(b *testing.B, n, size int) *benchImage {
	b.Helper()
	ctx := context.Background()
	dir := benchDir(b)
	bi := &benchImage{dir: dir}
	bi.priv, bi.pub = localKeysTB(b, dir)
	bi.plainRef, bi.plainDescs = benchLayers(b, filepath.Join(dir, "src"), n, size)
	bi.encRef = "oci:" + filepath.Join(dir, "enc") + ":v1"
	if _, err := imagecrypt.Encrypt(ctx, bi.plainRef, bi.encRef, []string{"jwe:" + bi.pub}, imagecrypt.Options{TempDir: dir}); err != nil {
		b.Fatal(err)
	}
	st, err := oci.New(filepath.Join(dir, "enc"))
	if err != nil {
		b.Fatal(err)
	}
	md, err := st.Resolve(ctx, "v1")
	if err != nil {
		b.Fatal(err)
	}
	raw, err := content.FetchAll(ctx, st, md)
	if err != nil {
		b.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		b.Fatal(err)
	}
	bi.encDescs = m.Layers
	for i := range n {
		bi.plainBlobs = append(bi.plainBlobs, filepath.Join(dir, "src", "blobs", "sha256", bi.plainDescs[i].Digest.Encoded()))
		bi.encBlobs = append(bi.encBlobs, filepath.Join(dir, "enc", "blobs", "sha256", bi.encDescs[i].Digest.Encoded()))
	}
	pubB, _ := os.ReadFile(bi.pub)
	privB, _ := os.ReadFile(bi.priv)
	ecc, err := encconfig.EncryptWithJwe([][]byte{pubB})
	if err != nil {
		b.Fatal(err)
	}
	dcc, err := encconfig.DecryptWithPrivKeys([][]byte{privB}, [][]byte{nil})
	if err != nil {
		b.Fatal(err)
	}
	bi.ec, bi.dc = ecc.EncryptConfig, dcc.DecryptConfig
	return bi
}

// direct streams r to a new file with 4 MiB buffers and fsyncs it once.
func direct(b *testing.B, r io.Reader, out string, buf []byte) {
	f, err := os.Create(out)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyBuffer(struct{ io.Writer }{f}, r, buf); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
}

// encryptDirect: ocicrypt encrypts the layers one after another.
func (bi *benchImage) encryptDirect(b *testing.B, buf []byte) {
	for i, p := range bi.plainBlobs {
		in, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		r, fin, err := ocicrypt.EncryptLayer(bi.ec, in, bi.plainDescs[i])
		if err != nil {
			b.Fatal(err)
		}
		direct(b, r, filepath.Join(bi.dir, fmt.Sprintf("direct-%d.enc", i)), buf)
		in.Close()
		if _, err := fin(); err != nil {
			b.Fatal(err)
		}
	}
}

// decryptDirect: ocicrypt decrypts the layers one after another.
func (bi *benchImage) decryptDirect(b *testing.B, buf []byte) {
	for i, p := range bi.encBlobs {
		in, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		r, _, err := ocicrypt.DecryptLayer(bi.dc, in, bi.encDescs[i], false)
		if err != nil {
			b.Fatal(err)
		}
		direct(b, r, filepath.Join(bi.dir, fmt.Sprintf("direct-%d.dec", i)), buf)
		in.Close()
	}
}

func (bi *benchImage) encryptCoffer(b *testing.B) {
	out := filepath.Join(bi.dir, "out-enc")
	if _, err := imagecrypt.Encrypt(context.Background(), bi.plainRef, "oci:"+out+":v1", []string{"jwe:" + bi.pub}, imagecrypt.Options{TempDir: bi.dir}); err != nil {
		b.Fatal(err)
	}
}

func (bi *benchImage) decryptCoffer(b *testing.B) {
	out := filepath.Join(bi.dir, "out-dec")
	if _, err := imagecrypt.Decrypt(context.Background(), bi.encRef, "oci:"+out+":v1", []string{bi.priv}, imagecrypt.Options{TempDir: bi.dir}); err != nil {
		b.Fatal(err)
	}
}

// clean removes every output of a run (outside the timed part: both contenders write new
// files each round).
func (bi *benchImage) clean() {
	os.RemoveAll(filepath.Join(bi.dir, "out-enc"))
	os.RemoveAll(filepath.Join(bi.dir, "out-dec"))
	for i := range bi.plainBlobs {
		os.Remove(filepath.Join(bi.dir, fmt.Sprintf("direct-%d.enc", i)))
		os.Remove(filepath.Join(bi.dir, fmt.Sprintf("direct-%d.dec", i)))
	}
}

// sample is one contender's run.
type sample struct{ wall, cpu time.Duration }

// paired runs ocicrypt direct and Coffer once per round (b.N rounds after a warm-up), in
// alternating order, and reports the paired ratio and each one's MB/s, CPU ns/B and cores.
func paired(b *testing.B, bi *benchImage, bytes int64, ocicryptRun, cofferRun func()) {
	// Each run is labelled in a CPU profile (-cpuprofile; its goroutines inherit the
	// label): go tool pprof -tagfocus 'run=Layer256MiB/encrypt/coffer$' -top.
	labelled := func(who string, f func()) func() {
		return func() {
			pprof.Do(context.Background(), pprof.Labels("run", b.Name()+"/"+who), func(context.Context) { f() })
		}
	}
	ocicryptRun, cofferRun = labelled("ocicrypt", ocicryptRun), labelled("coffer", cofferRun)
	run := func(f func()) sample {
		bi.clean()
		runtime.GC()
		t, c := time.Now(), cpuTime(b)
		f()
		return sample{time.Since(t), cpuTime(b) - c}
	}
	run(ocicryptRun) // warm-up, not counted
	run(cofferRun)
	var oc, co []sample
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			oc, co = append(oc, run(ocicryptRun)), append(co, run(cofferRun))
		} else {
			co, oc = append(co, run(cofferRun)), append(oc, run(ocicryptRun))
		}
	}
	bi.clean()
	var ratio, ocMB, coMB, ocNs, coNs, ocCores, coCores []float64
	for i := range oc {
		ratio = append(ratio, oc[i].wall.Seconds()/co[i].wall.Seconds())
		ocMB, coMB = append(ocMB, float64(bytes)/1e6/oc[i].wall.Seconds()), append(coMB, float64(bytes)/1e6/co[i].wall.Seconds())
		ocNs, coNs = append(ocNs, float64(oc[i].cpu.Nanoseconds())/float64(bytes)), append(coNs, float64(co[i].cpu.Nanoseconds())/float64(bytes))
		ocCores, coCores = append(ocCores, oc[i].cpu.Seconds()/oc[i].wall.Seconds()), append(coCores, co[i].cpu.Seconds()/co[i].wall.Seconds())
	}
	med, lo, hi := stats(ratio)
	b.ReportMetric(med, "ratio-median")
	b.ReportMetric(lo, "ratio-min")
	b.ReportMetric(hi, "ratio-max")
	m, _, _ := stats(coMB)
	b.ReportMetric(m, "coffer-MB/s")
	m, _, _ = stats(ocMB)
	b.ReportMetric(m, "ocicrypt-MB/s")
	m, _, _ = stats(coNs)
	b.ReportMetric(m, "coffer-cpu-ns/B")
	m, _, _ = stats(ocNs)
	b.ReportMetric(m, "ocicrypt-cpu-ns/B")
	b.Logf("%d rounds, median [min–max]: Coffer ÷ ocicrypt (paired per round, MB/s) %s; MB/s Coffer %s, ocicrypt %s; CPU ns/B Coffer %s, ocicrypt %s; cores Coffer %s, ocicrypt %s",
		len(ratio), spread(ratio, "%.2f"), spread(coMB, "%.0f"), spread(ocMB, "%.0f"), spread(coNs, "%.2f"), spread(ocNs, "%.2f"), spread(coCores, "%.2f"), spread(ocCores, "%.2f"))
}

func stats(v []float64) (median, lo, hi float64) {
	s := slices.Clone(v)
	slices.Sort(s)
	median = s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return median, s[0], s[len(s)-1]
}

func spread(v []float64, format string) string {
	m, lo, hi := stats(v)
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", m, lo, hi)
}

// BenchmarkLayer256MiB: one 256 MiB layer, encrypted and decrypted by Coffer and by
// ocicrypt direct (see above), and the verify-before-release step's own work alone.
func BenchmarkLayer256MiB(b *testing.B) {
	const size = 256 << 20
	bi := newBenchImage(b, 1, size)
	buf := make([]byte, 4<<20)
	b.Run("encrypt", func(b *testing.B) {
		paired(b, bi, size, func() { bi.encryptDirect(b, buf) }, func() { bi.encryptCoffer(b) })
	})
	b.Run("decrypt", func(b *testing.B) {
		paired(b, bi, size, func() { bi.decryptDirect(b, buf) }, func() { bi.decryptCoffer(b) })
	})
	// The work verify-before-release adds to ocicrypt's own (whose HMAC authenticates the
	// encrypted blob): the SHA-256 of the plaintext, which is the recorded digest and, for
	// an uncompressed layer, the diff_id. Staging needs no extra pass: the plaintext is
	// written once to a private file and renamed when every layer passed.
	b.Run("verify-step-alone", func(b *testing.B) {
		b.SetBytes(size)
		vb := make([]byte, 512<<10)
		for b.Loop() {
			f, err := os.Open(bi.plainBlobs[0])
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.CopyBuffer(h, struct{ io.Reader }{f}, vb); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}

// BenchmarkImage4x64MiB: an image of four 64 MiB layers; Coffer processes the layers in
// parallel (one per core), ocicrypt direct one after another.
func BenchmarkImage4x64MiB(b *testing.B) {
	const n, size = 4, 64 << 20
	bi := newBenchImage(b, n, size)
	buf := make([]byte, 4<<20)
	b.Run("encrypt", func(b *testing.B) {
		paired(b, bi, n*size, func() { bi.encryptDirect(b, buf) }, func() { bi.encryptCoffer(b) })
	})
	b.Run("decrypt", func(b *testing.B) {
		paired(b, bi, n*size, func() { bi.decryptDirect(b, buf) }, func() { bi.decryptCoffer(b) })
	})
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
