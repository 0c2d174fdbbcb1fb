package vault_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/vault"
)

// BenchmarkServiceUnwrap measures the in-process API (the registry's path): access check,
// network rules, key cache and audit record around an RSA-2048 decryption, against the raw
// decryption, interleaved.
func BenchmarkServiceUnwrap(b *testing.B) {
	f := setupB(b)
	ctx := vault.AsService(context.Background(), "registry")
	f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "bench"})
	k, err := f.svc.CreateKey(ctx, f.admin, "bench", "kek", vault.CreateKeyParams{Kty: "RSA", Size: 2048})
	if err != nil {
		b.Fatal(err)
	}
	dek := make([]byte, 32)
	_, wrapped, err := f.svc.WrapKey(ctx, f.reg, "bench", "kek", "", "RSA-OAEP-256", dek)
	if err != nil {
		b.Fatal(err)
	}
	local, _ := rsa.GenerateKey(rand.Reader, 2048)
	ct, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &local.PublicKey, dek, nil)
	var svc, raw time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, _, err := f.svc.UnwrapKey(ctx, f.reg, "bench", "kek", k.Version, "RSA-OAEP-256", wrapped); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		rsa.DecryptOAEP(sha256.New(), nil, local, ct, nil)
		raw += time.Since(t1)
		svc += t1.Sub(t0)
	}
	b.ReportMetric(raw.Seconds()/svc.Seconds(), "service/raw")
}
