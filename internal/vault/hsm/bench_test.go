//go:build cgo

package hsm_test

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/cofferhq/coffer/internal/vault/hsm"
	"github.com/cofferhq/coffer/internal/vault/hsm/hsmtest"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

// BenchmarkUnwrap unwraps a 32-byte key wrapped with RSA-OAEP under an RSA-2048 key, in
// software (the vault's RSA keys) and in the SoftHSM token (RSA-HSM keys), in one run.
// Run: go test -run XXX -bench Unwrap -benchtime 2s ./internal/vault/hsm/
func BenchmarkUnwrap(b *testing.B) {
	ctx := context.Background()
	tok := hsmtest.New(b, "coffer-bench")
	be, err := hsm.Open(ctx, tok.Config, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	pub, ref, err := be.Generate(ctx, "bench/rsa", keys.CreateSpec{Kty: keys.KtyRSAHSM, Size: 2048})
	if err != nil {
		b.Fatal(err)
	}
	inToken, err := be.OpenKey(ctx, ref, pub)
	if err != nil {
		b.Fatal(err)
	}
	j, err := keys.Generate(keys.CreateSpec{Kty: keys.KtyRSA, Size: 2048})
	if err != nil {
		b.Fatal(err)
	}
	soft, err := keys.Parse(j)
	if err != nil {
		b.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	for _, c := range []struct {
		name string
		op   keys.Operator
	}{{"software", soft}, {"hsm", inToken}} {
		w, err := c.op.Encrypt(keys.CipherParams{Alg: keys.AlgRSAOAEP, Value: secret}, true)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.op.Decrypt(keys.CipherParams{Alg: keys.AlgRSAOAEP, Value: w.Value}, true); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "unwraps/s")
		})
	}
}
