package trust_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/theupdateframework/notary/tuf/data"

	"github.com/cofferhq/coffer/internal/trust"
	"github.com/cofferhq/coffer/internal/vault"
)

// BenchmarkTimestampSigning compares, in one run, signing timestamp metadata with a P-256
// key in the vault (the call the trust service makes: ES256 over the SHA-256 of the
// canonical bytes, by the registry's identity, audited) with signing the same bytes with
// a local ECDSA P-256 key, and the whole re-sign-on-read path of the service (an expired
// timestamp read: store, vault sign, sealed write, index commit).
func BenchmarkTimestampSigning(b *testing.B) {
	f := newFixture(b)
	const gun = "registry.test/bench/app"
	f.publish(b, gun)
	ctx := context.Background()
	m, err := f.svc.Get(ctx, gun, data.CanonicalTimestampRole)
	if err != nil {
		b.Fatal(err)
	}
	msg := m.Data
	sctx := vault.AsService(ctx, "bench")
	if _, err := f.vault.CreateKey(sctx, f.sys, trust.DefaultVaultName, "bench-timestamp", vault.CreateKeyParams{Kty: "EC", Curve: "P-256"}); err != nil {
		b.Fatal(err)
	}
	local, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	b.Run("vault", func(b *testing.B) {
		for b.Loop() {
			d := sha256.Sum256(msg)
			if _, _, err := f.vault.Sign(sctx, f.sys, trust.DefaultVaultName, "bench-timestamp", "", "ES256", d[:]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signs/s")
	})
	b.Run("local-ecdsa", func(b *testing.B) {
		for b.Loop() {
			d := sha256.Sum256(msg)
			if _, _, err := ecdsa.Sign(rand.Reader, local, d[:]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signs/s")
	})
	b.Run("resign-on-read", func(b *testing.B) {
		for b.Loop() {
			f.clock.Add(trust.TimestampLifetime + time.Minute)
			if _, err := f.svc.Get(ctx, gun, data.CanonicalTimestampRole); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "timestamps/s")
	})
}
