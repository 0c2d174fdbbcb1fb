package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// cpuTime is this process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// protoOf answers which HTTP version a GET to u negotiates with the server.
func protoOf(b *testing.B, e *vaulttest.Env, u string) string {
	resp, err := e.HTTP.Get(u + "/keys?api-version=7.4")
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Proto
}

// BenchmarkDocsVaultUnwrapPaths splits the cost of one RSA-2048 RSA-OAEP-256 unwrap (one
// caller at a time, the vault in this process behind real TLS) by the path it takes, each
// against the raw crypto/rsa decryption of the same size, interleaved in every iteration so
// that load hits all alike:
//
//   - sdk-h1: the azkeys SDK by the vault's host name (TLS SNI NAME.<domain>), which the
//     server offers HTTP/1.1 only;
//   - sdk-h2: the same SDK by the vault's own port (https://127.0.0.1:PORT), where the
//     server keeps HTTP/2 (asserted: the benchmark fails if either negotiates otherwise);
//   - http-h1: one hand-made net/http POST by host name with a bearer token from the same
//     token service: the server's cost without the SDK's pipeline.
//
// Metrics: each path's throughput ÷ raw (x/raw), sdk-h1÷http-h1 (what the SDK pipeline
// leaves), and for the sdk-h1 calls the process's CPU use (rusage: client and server are
// both in it) as cores busy on average (cpu-cores; 1 − it is the idle share of one core)
// and the raw decryption's share of that CPU (rsa-cpu-share, an estimate: the server's
// decryption costs what the raw one does). docs/vault.md quotes them; scripts/bench-docs
// runs it.
func BenchmarkDocsVaultUnwrapPaths(b *testing.B) {
	e := vaulttest.Start(b, func(c *config.Server) { c.Vault.RateLimit = 0 })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	v := e.CreateVault(b, "bench", map[string]any{"port": port})
	app := e.ServicePrincipal(b, "bench")
	e.SetPolicy(b, "bench", app.ObjectID, "create", "wrapKey", "unwrapKey")
	h1 := client(b, e, e.HostURL("bench"), app, false)
	h2 := client(b, e, v.VaultURI, app, true)
	if p := protoOf(b, e, e.HostURL("bench")); p != "HTTP/1.1" {
		b.Fatalf("by host name the vault negotiates %s, want HTTP/1.1", p)
	}
	if p := protoOf(b, e, v.VaultURI); p != "HTTP/2.0" {
		b.Fatalf("by its own port the vault negotiates %s, want HTTP/2.0", p)
	}
	ctx := context.Background()
	if _, err := h1.CreateKey(ctx, "kek", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr[int32](2048)}, nil); err != nil {
		b.Fatal(err)
	}
	dek := make([]byte, 32)
	rand.Read(dek)
	alg := to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256)
	w, err := h1.WrapKey(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: alg, Value: dek}, nil)
	if err != nil {
		b.Fatal(err)
	}
	version := w.KID.Version()
	params := azkeys.KeyOperationParameters{Algorithm: alg, Value: w.Result}
	sdk := func(c *azkeys.Client) {
		un, err := c.UnwrapKey(ctx, "kek", version, params, nil)
		if err != nil || !bytes.Equal(un.Result, dek) {
			b.Fatalf("SDK unwrap: %v", err)
		}
	}
	tok := vaultToken(b, e, app)
	body, _ := json.Marshal(map[string]string{"alg": "RSA-OAEP-256", "value": base64.RawURLEncoding.EncodeToString(w.Result)})
	unwrapURL := e.HostURL("bench") + "/keys/kek/" + version + "/unwrapkey?api-version=7.4"
	plainHTTP := func() {
		req, _ := http.NewRequest(http.MethodPost, unwrapURL, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := e.HTTP.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var out struct {
			Value string `json:"value"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		got, _ := base64.RawURLEncoding.DecodeString(out.Value)
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, dek) {
			b.Fatalf("HTTP unwrap: %d %v", resp.StatusCode, err)
		}
	}
	local, _ := rsa.GenerateKey(rand.Reader, 2048)
	localCT, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &local.PublicKey, dek, nil)
	rawDecrypt := func() {
		if pt, err := rsa.DecryptOAEP(sha256.New(), nil, local, localCT, nil); err != nil || !bytes.Equal(pt, dek) {
			b.Fatal(err)
		}
	}
	for range 5 { // warm up: tokens, connections, parsed key cache
		sdk(h1)
		sdk(h2)
		plainHTTP()
	}

	var tH1, tH2, tHTTP, tRaw, cpuH1 time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c0, t0 := cpuTime(b), time.Now()
		sdk(h1)
		t1 := time.Now()
		cpuH1 += cpuTime(b) - c0
		sdk(h2)
		t2 := time.Now()
		plainHTTP()
		t3 := time.Now()
		rawDecrypt()
		t4 := time.Now()
		tH1 += t1.Sub(t0)
		tH2 += t2.Sub(t1)
		tHTTP += t3.Sub(t2)
		tRaw += t4.Sub(t3)
	}
	b.StopTimer()
	b.ReportMetric(tRaw.Seconds()/tH1.Seconds(), "sdk-h1/raw")
	b.ReportMetric(tRaw.Seconds()/tH2.Seconds(), "sdk-h2/raw")
	b.ReportMetric(tRaw.Seconds()/tHTTP.Seconds(), "http-h1/raw")
	b.ReportMetric(tHTTP.Seconds()/tH1.Seconds(), "sdk-h1/http-h1")
	b.ReportMetric(cpuH1.Seconds()/tH1.Seconds(), "cpu-cores")
	b.ReportMetric(tRaw.Seconds()/cpuH1.Seconds(), "rsa-cpu-share")
}
