package kmsplugin_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/kek/inproc"
	"github.com/cofferhq/coffer/internal/kek/resolve"
	"github.com/cofferhq/coffer/internal/kmsplugin"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

type kekFunc func(ctx context.Context, keyID string) (kek.KEK, error)

func (f kekFunc) KEK(ctx context.Context, keyID string) (kek.KEK, error) { return f(ctx, keyID) }

// servePlugin runs a plugin on a unix socket with k as its key and returns a client.
func servePlugin(b *testing.B, keyID string, k kek.KEK) kmsapi.KeyManagementServiceClient {
	p, err := kmsplugin.New(kmsplugin.Options{Source: kmsplugin.StaticSource{S: kmsplugin.Settings{WriteKey: keyID}},
		KEKs: kekFunc(func(context.Context, string) (kek.KEK, error) { return k, nil }), SelfTestInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	if err := p.Start(ctx); err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(b.TempDir(), "kms.sock")
	l, err := kmsplugin.ListenUnix(sock)
	if err != nil {
		b.Fatal(err)
	}
	go p.Serve(ctx, l, nil)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return kmsapi.NewKeyManagementServiceClient(conn)
}

// measure runs op b.N times and reports p50, p99 and ops/s.
func measure(b *testing.B, op func() error) {
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		t0 := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	total := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds()), "p99-µs")
	b.ReportMetric(float64(len(lat))/total.Seconds(), "ops/s")
}

// BenchmarkKMS measures Encrypt and Decrypt over the plugin's unix socket with an RSA 3072
// key in Coffer's vault called in-process and over HTTPS (the Azure SDK), against raw
// RSA-OAEP-256 with a 3072-bit key in the same run.
func BenchmarkKMS(b *testing.B) {
	e := vaulttest.Start(b, nil)
	sp := e.ServicePrincipal(b, "kms-bench")
	port := freePortB(b)
	e.CreateVault(b, "bench", map[string]any{"port": port})
	keyInVaultB(b, e, "bench", "k8s", 3072)
	e.SetPolicy(b, "bench", sp.ObjectID, "get", "wrapKey", "unwrapKey")
	keyID := fmt.Sprintf("https://127.0.0.1:%d/keys/k8s", port)

	ctx := context.Background()
	principal, err := e.Inst.Server.Identities().Resolve(ctx, sp.ClientID)
	if err != nil {
		b.Fatal(err)
	}
	svc := e.Inst.Server.Vault()
	inProcess := inproc.New(svc, principal, svc.LocalVault)
	https, err := resolve.NewRemote(resolve.Credential{TenantID: e.TenantID, ClientID: sp.ClientID, ClientSecret: sp.Secret, AuthorityHost: e.Inst.URL + "/"}, e.Inst.CAFile).KEK(ctx, sp.ClientID, keyID)
	if err != nil {
		b.Fatal(err)
	}
	seed := make([]byte, 32)
	rand.Read(seed)
	for _, d := range []struct {
		name string
		k    kek.KEK
	}{{"inprocess", inProcess}, {"https", https}} {
		c := servePlugin(b, keyID, d.k)
		enc, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed, Uid: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(d.name+"/encrypt", func(b *testing.B) {
			measure(b, func() error {
				_, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed, Uid: "bench"})
				return err
			})
		})
		b.Run(d.name+"/decrypt", func(b *testing.B) {
			measure(b, func() error {
				_, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "bench"})
				return err
			})
		})
	}
	raw, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		b.Fatal(err)
	}
	wrapped, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &raw.PublicKey, seed, nil)
	b.Run("raw-rsa-oaep/encrypt", func(b *testing.B) {
		measure(b, func() error {
			_, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &raw.PublicKey, seed, nil)
			return err
		})
	})
	b.Run("raw-rsa-oaep/decrypt", func(b *testing.B) {
		measure(b, func() error { _, err := rsa.DecryptOAEP(sha256.New(), nil, raw, wrapped, nil); return err })
	})
}
