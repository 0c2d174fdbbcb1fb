package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

func benchClient(b *testing.B) *azkeys.Client {
	e := vaulttest.Start(b, func(c *config.Server) { c.Vault.RateLimit = 0 })
	e.CreateVault(b, "bench", nil)
	app := e.ServicePrincipal(b, "bench")
	e.SetPolicy(b, "bench", app.ObjectID, "create", "wrapKey", "unwrapKey")
	c := client(b, e, e.HostURL("bench"), app, false)
	if _, err := c.CreateKey(context.Background(), "kek", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr[int32](2048)}, nil); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkRSA2048Unwrap measures an RSA-2048 RSA-OAEP-256 unwrap through the real azkeys
// SDK over HTTPS (token, network rules, access check, audit record included) against the
// raw crypto/rsa decryption of the same size in the same process, interleaved so that load
// on the machine hits both alike. sdk/raw is the throughput ratio (goal: at least 0.7).
func BenchmarkRSA2048Unwrap(b *testing.B) {
	c := benchClient(b)
	ctx := context.Background()
	dek := make([]byte, 32)
	rand.Read(dek)
	alg := to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256)
	w, err := c.WrapKey(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: alg, Value: dek}, nil)
	if err != nil {
		b.Fatal(err)
	}
	version := w.KID.Version()
	// Warm up: token, connection, parsed key cache.
	for i := 0; i < 5; i++ {
		if _, err := c.UnwrapKey(ctx, "kek", version, azkeys.KeyOperationParameters{Algorithm: alg, Value: w.Result}, nil); err != nil {
			b.Fatal(err)
		}
	}
	local, _ := rsa.GenerateKey(rand.Reader, 2048)
	localCT, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &local.PublicKey, dek, nil)

	var sdk, raw time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		un, err := c.UnwrapKey(ctx, "kek", version, azkeys.KeyOperationParameters{Algorithm: alg, Value: w.Result}, nil)
		t1 := time.Now()
		if err != nil || !bytes.Equal(un.Result, dek) {
			b.Fatalf("unwrap: %v", err)
		}
		pt, err := rsa.DecryptOAEP(sha256.New(), nil, local, localCT, nil)
		t2 := time.Now()
		if err != nil || !bytes.Equal(pt, dek) {
			b.Fatal(err)
		}
		sdk += t1.Sub(t0)
		raw += t2.Sub(t1)
	}
	b.StopTimer()
	b.ReportMetric(raw.Seconds()/sdk.Seconds(), "sdk/raw")
	b.ReportMetric(float64(b.N)/sdk.Seconds(), "sdk-unwrap/s")
	b.ReportMetric(float64(b.N)/raw.Seconds(), "raw-decrypt/s")
}

// BenchmarkRSA2048Wrap measures wrap (a public-key operation: the cost is the API path)
// through the SDK, one caller at a time.
func BenchmarkRSA2048Wrap(b *testing.B) {
	c := benchClient(b)
	ctx := context.Background()
	dek := make([]byte, 32)
	alg := to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256)
	if _, err := c.WrapKey(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: alg, Value: dek}, nil); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := c.WrapKey(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: alg, Value: dek}, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "wrap/s")
}

// BenchmarkRSA2048UnwrapParallel is BenchmarkRSA2048Unwrap with 4 callers at a time (a
// registry serving pulls in parallel): round after round, the SDK and the raw decryption
// each run a chunk of operations on 4 goroutines, and sdk/raw compares throughputs.
func BenchmarkRSA2048UnwrapParallel(b *testing.B) {
	c := benchClient(b)
	ctx := context.Background()
	dek := make([]byte, 32)
	rand.Read(dek)
	alg := to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256)
	w, err := c.WrapKey(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: alg, Value: dek}, nil)
	if err != nil {
		b.Fatal(err)
	}
	version := w.KID.Version()
	local, _ := rsa.GenerateKey(rand.Reader, 2048)
	localCT, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &local.PublicKey, dek, nil)
	const workers = 4
	run := func(n int, op func() error) time.Duration {
		start := time.Now()
		errs := make(chan error, workers)
		for g := 0; g < workers; g++ {
			go func(g int) {
				var err error
				for i := g; i < n && err == nil; i += workers {
					err = op()
				}
				errs <- err
			}(g)
		}
		for g := 0; g < workers; g++ {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	sdkOp := func() error {
		un, err := c.UnwrapKey(ctx, "kek", version, azkeys.KeyOperationParameters{Algorithm: alg, Value: w.Result}, nil)
		if err == nil && !bytes.Equal(un.Result, dek) {
			err = errors.New("unwrap gave other bytes")
		}
		return err
	}
	rawOp := func() error {
		_, err := rsa.DecryptOAEP(sha256.New(), nil, local, localCT, nil)
		return err
	}
	run(8, sdkOp) // warm up: connections, token, key cache
	var sdk, raw time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(64, b.N-done)
		sdk += run(n, sdkOp)
		raw += run(n, rawOp)
		done += n
	}
	b.StopTimer()
	b.ReportMetric(raw.Seconds()/sdk.Seconds(), "sdk/raw")
	b.ReportMetric(float64(b.N)/sdk.Seconds(), "sdk-unwrap/s")
	b.ReportMetric(float64(b.N)/raw.Seconds(), "raw-decrypt/s")
}
