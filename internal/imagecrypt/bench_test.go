package imagecrypt_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"hash"
	"io"
	"os"
	"path/filepath"
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

const benchSize = 256 << 20

// benchLayout writes a one-layer image (an uncompressed layer of random bytes) to dir.
func benchLayout(b *testing.B, dir string) (string, ocispec.Descriptor) {
	b.Helper()
	layer := make([]byte, benchSize)
	rand.Read(layer)
	return plainLayout(b, dir, [][]byte{layer}), content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayer, layer)
}

// BenchmarkLayer256MiB: encrypt and decrypt of one 256 MiB layer, in one run, by
//
//   - ocicrypt (strict): the ocicrypt library called directly on the same blob files,
//     streamed to a file that is fsync'd once: no digest of the output, no verification
//     (the least a tool built on ocicrypt does; its output could not be pushed);
//   - ocicrypt+digest: the same, also digesting what it writes in the same goroutine
//     (what any tool that pushes the result or writes a layout must do: the new blob's
//     digest on encryption, the plaintext's on decryption);
//   - Coffer end to end: OCI layout to OCI layout, the source digest checked, made durable
//     once, decryption verified before release;
//
// and the verify step's own work alone (the digests Coffer checks that ocicrypt does not:
// the encrypted blob's and the plaintext's, which is the diff_id of an uncompressed
// layer), serially on one core.
func BenchmarkLayer256MiB(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	priv, pub := localKeysB(b, dir)
	src, ld := benchLayout(b, filepath.Join(dir, "src"))
	enc := "oci:" + filepath.Join(dir, "enc") + ":v1"
	res, err := imagecrypt.Encrypt(ctx, src, enc, []string{"jwe:" + pub}, imagecrypt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	plainBlob := filepath.Join(dir, "src", "blobs", "sha256", ld.Digest.Encoded())
	encBlob := filepath.Join(dir, "enc", "blobs", "sha256", res.Images[0].Layers[0].Digest.Encoded())
	pubB, _ := os.ReadFile(pub)
	privB, _ := os.ReadFile(priv)
	ecc, _ := encconfig.EncryptWithJwe([][]byte{pubB})
	dcc, _ := encconfig.DecryptWithPrivKeys([][]byte{privB}, [][]byte{nil})
	// The encrypted blob's descriptor, as the direct decryption needs it.
	var encDesc ocispec.Descriptor
	{
		st, err := oci.New(filepath.Join(dir, "enc"))
		if err != nil {
			b.Fatal(err)
		}
		md, err := st.Resolve(ctx, "v1")
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := content.FetchAll(ctx, st, md)
		var m ocispec.Manifest
		json.Unmarshal(raw, &m)
		encDesc = m.Layers[0]
	}
	buf := make([]byte, 4<<20)
	// direct streams r to a new file with large buffers and fsyncs it once; with h, it
	// digests what it writes too (in the same goroutine, as io.MultiWriter does).
	direct := func(b *testing.B, r io.Reader, out string, h hash.Hash) {
		f, err := os.Create(out)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		var w io.Writer = struct{ io.Writer }{f}
		if h != nil {
			w = io.MultiWriter(f, h)
		}
		if _, err := io.CopyBuffer(w, r, buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}

	// Each iteration runs the strict baseline, the digesting baseline and Coffer back to
	// back (rotating which goes first), so that the shared machine's load falls on all
	// alike; the metrics are each one's MB/s, CPU seconds and Coffer's ratios.
	trio := func(b *testing.B, strict, digested, coffer func()) {
		type contender struct {
			f         func()
			wall, cpu time.Duration
		}
		cs := []*contender{{f: strict}, {f: digested}, {f: coffer}}
		for i := 0; b.Loop(); i++ {
			for j := range cs {
				c := cs[(i+j)%len(cs)]
				t, cpu := time.Now(), cpuTime(b)
				c.f()
				c.wall += time.Since(t)
				c.cpu += cpuTime(b) - cpu
			}
		}
		mb := float64(benchSize) * float64(b.N) / 1e6
		b.ReportMetric(mb/cs[0].wall.Seconds(), "ocicrypt-MB/s")
		b.ReportMetric(mb/cs[1].wall.Seconds(), "ocicrypt+digest-MB/s")
		b.ReportMetric(mb/cs[2].wall.Seconds(), "coffer-MB/s")
		b.ReportMetric(cs[0].wall.Seconds()/cs[2].wall.Seconds(), "coffer/ocicrypt")
		b.ReportMetric(cs[1].wall.Seconds()/cs[2].wall.Seconds(), "coffer/ocicrypt+digest")
		// CPU seconds (user+system, all threads) per 256 MiB: the work, apart from the
		// machine's load.
		b.ReportMetric(cs[0].cpu.Seconds()/float64(b.N), "ocicrypt-cpu-s")
		b.ReportMetric(cs[1].cpu.Seconds()/float64(b.N), "ocicrypt+digest-cpu-s")
		b.ReportMetric(cs[2].cpu.Seconds()/float64(b.N), "coffer-cpu-s")
	}
	encryptDirect := func(b *testing.B, h hash.Hash) {
		in, err := os.Open(plainBlob)
		if err != nil {
			b.Fatal(err)
		}
		defer in.Close()
		r, fin, err := ocicrypt.EncryptLayer(ecc.EncryptConfig, in, ld)
		if err != nil {
			b.Fatal(err)
		}
		direct(b, r, filepath.Join(dir, "direct.enc"), h)
		if _, err := fin(); err != nil {
			b.Fatal(err)
		}
	}
	decryptDirect := func(b *testing.B, h hash.Hash) {
		in, err := os.Open(encBlob)
		if err != nil {
			b.Fatal(err)
		}
		defer in.Close()
		r, _, err := ocicrypt.DecryptLayer(dcc.DecryptConfig, in, encDesc, false)
		if err != nil {
			b.Fatal(err)
		}
		direct(b, r, filepath.Join(dir, "direct.dec"), h)
	}
	b.Run("encrypt", func(b *testing.B) {
		trio(b, func() { encryptDirect(b, nil) }, func() { encryptDirect(b, sha256.New()) }, func() {
			os.RemoveAll(filepath.Join(dir, "out-enc"))
			if _, err := imagecrypt.Encrypt(ctx, src, "oci:"+filepath.Join(dir, "out-enc")+":v1", []string{"jwe:" + pub}, imagecrypt.Options{}); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("decrypt", func(b *testing.B) {
		trio(b, func() { decryptDirect(b, nil) }, func() { decryptDirect(b, sha256.New()) }, func() {
			os.RemoveAll(filepath.Join(dir, "out-dec"))
			if _, err := imagecrypt.Decrypt(ctx, enc, "oci:"+filepath.Join(dir, "out-dec")+":v1", []string{priv}, imagecrypt.Options{}); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("decrypt/verify-step-alone", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			for _, p := range []string{encBlob, plainBlob} {
				f, err := os.Open(p)
				if err != nil {
					b.Fatal(err)
				}
				h := sha256.New()
				io.CopyBuffer(h, f, buf)
				f.Close()
			}
		}
	})
}

func localKeysB(b *testing.B, dir string) (string, string) { return localKeysTB(b, dir) }

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
