package seal

import (
	"crypto/rand"
	"crypto/sha256"
	"testing"
)

// BenchmarkDocsSHA256 is the registry's digest hashing on its own: crypto/sha256 (what
// registry uploads hash the plaintext with) fed 1 MiB writes, the size a handler's copy
// hands over. docs/encryption.md compares it with sealing (BenchmarkSealSegments): it is
// the slowest step of both push and pull. scripts/bench-docs runs it.
func BenchmarkDocsSHA256(b *testing.B) {
	chunk := make([]byte, 1<<20)
	rand.Read(chunk)
	h := sha256.New()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		h.Write(chunk)
	}
	if len(h.Sum(nil)) != sha256.Size {
		b.Fatal("no digest")
	}
}
