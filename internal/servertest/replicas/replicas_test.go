// Package replicas_test runs two Coffer replicas on one PostgreSQL database and one S3
// bucket (versitygw) behind a round-robin reverse proxy, the layout docs/scale-out.md
// describes, with the ecosystem's own client.
package replicas_test

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cofferhq/coffer/internal/blobstore/s3/s3test"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// cluster is two replicas and the proxy in front of them.
type cluster struct {
	replicas []*servertest.Instance
	proxy    *httptest.Server
	// client trusts the proxy's certificate; hits counts the requests each replica got.
	client   *http.Client
	hits     []atomic.Int64
	password string
	// What the replicas share, for tests that reach past them (backup_test.go).
	pg      *pgtest.Server
	dbName  string
	bucket  *s3test.Server
	rootKey string
	blobs   config.BlobStore
}

func startCluster(t *testing.T, mutate func(*config.Server)) *cluster {
	t.Helper()
	pg := pgtest.Start(t)
	dbName := pg.NewDatabase(t)
	dbURL := pg.URL(dbName)
	bucket := s3test.Start(t, "coffer")
	secret := filepath.Join(t.TempDir(), "s3-secret")
	if err := os.WriteFile(secret, []byte(s3test.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Every replica is given the same vault root key (here one file; in production a
	// mounted secret or COFFER_VAULT_ROOT_KEY).
	rootKey := filepath.Join(t.TempDir(), "vault-root.key")
	root, _, err := vault.LoadRootKeyWith(t.Context(), rootKey, "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	clear(root)

	c := &cluster{replicas: make([]*servertest.Instance, 2), hits: make([]atomic.Int64, 2),
		pg: pg, dbName: dbName, bucket: bucket, rootKey: rootKey}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range c.replicas {
		wg.Add(1)
		go func() { // at the same moment, on a fresh database and bucket
			defer wg.Done()
			cfg := config.Defaults()
			cfg.DataDir = t.TempDir()
			cfg.Listen = "127.0.0.1:0"
			cfg.Metadata = dbURL
			cfg.Vault.RootKeyFile = rootKey
			cfg.BlobStore = config.BlobStore{URL: "s3://coffer/registry", S3Endpoint: bucket.Endpoint, S3Region: "us-east-1",
				S3PathStyle: true, S3AccessKeyID: s3test.AccessKey, S3SecretAccessKeyFile: secret}
			if mutate != nil {
				mutate(&cfg)
			}
			c.replicas[i], errs[i] = servertest.StartConfig(cfg)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(c.replicas[i].Stop)
		c.password += c.replicas[i].AdminPassword // one of them made the administrator
	}
	c.blobs = c.replicas[0].Config.BlobStore

	// The load balancer: round robin over the replicas, each request to the next one.
	backends := make([]*url.URL, 2)
	trusted := x509.NewCertPool()
	for i, r := range c.replicas {
		backends[i], _ = url.Parse(r.URL)
		pem, _ := os.ReadFile(r.CAFile)
		trusted.AppendCertsFromPEM(pem)
	}
	var next atomic.Int64
	c.proxy = httptest.NewTLSServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			i := int(next.Add(1) % 2)
			c.hits[i].Add(1)
			pr.SetURL(backends[i])
			pr.Out.Host = pr.In.Host // the address the client used, as a load balancer keeps it
		},
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: trusted}, ForceAttemptHTTP2: true},
	})
	t.Cleanup(c.proxy.Close)
	c.client = c.proxy.Client()
	return c
}

func (c *cluster) addr() string { return strings.TrimPrefix(c.proxy.URL, "https://") }

func randomImage(t *testing.T, layers ...int) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, n := range layers {
		b := make([]byte, n)
		rand.Read(b)
		var err error
		if img, err = mutate.AppendLayers(img, static.NewLayer(b, types.OCIUncompressedLayer)); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// pullVerified pulls ref through tr and reads every layer (digests verified at EOF).
func pullVerified(t *testing.T, ref name.Reference, want v1.Image, opts ...remote.Option) {
	t.Helper()
	got, err := remote.Image(ref, opts...)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	wd, _ := want.Digest()
	if d, _ := got.Digest(); d != wd {
		t.Fatalf("pulled %s, pushed %s", d, wd)
	}
	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		r, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, r)
		r.Close()
		if err != nil {
			t.Fatalf("pull %s: layer: %v", ref, err)
		}
	}
}

// TestTwoReplicasBehindProxy: go-containerregistry pushes through the proxy (so the
// token, the upload's requests and the manifest land on both replicas in turn) and the
// image pulls intact from each replica directly.
func TestTwoReplicasBehindProxy(t *testing.T) {
	c := startCluster(t, nil)
	auth := &authn.Basic{Username: "admin", Password: c.password}
	viaProxy := []remote.Option{remote.WithAuth(auth), remote.WithTransport(c.client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
	imgs := map[string]v1.Image{"v1": randomImage(t, 6<<20, 4096), "v2": randomImage(t, 300<<10)}
	for tag, img := range imgs {
		ref, err := name.ParseReference(c.addr() + "/team/app:" + tag)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img, viaProxy...); err != nil {
			t.Fatalf("push %s through the proxy: %v", tag, err)
		}
	}
	if c.hits[0].Load() == 0 || c.hits[1].Load() == 0 {
		t.Fatalf("the proxy sent %d and %d requests: the push did not reach both replicas", c.hits[0].Load(), c.hits[1].Load())
	}
	for i, r := range c.replicas {
		direct := []remote.Option{remote.WithAuth(auth), remote.WithTransport(r.Client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
		for tag, img := range imgs {
			ref, _ := name.ParseReference(r.Addr + "/team/app:" + tag)
			pullVerified(t, ref, img, direct...)
		}
		t.Logf("replica %d serves both images", i)
	}
	// And through the proxy again, every request to either replica.
	for tag, img := range imgs {
		ref, _ := name.ParseReference(c.addr() + "/team/app:" + tag)
		pullVerified(t, ref, img, viaProxy...)
	}
}

// TestRevocationOnOneReplica: the registry's key access revoked through one replica (the
// system identity's access policy on the platform vault deleted there) stops reads on the
// other within the access-check interval, and access restored there brings them back,
// with no restart: both read the policy from the database.
func TestRevocationOnOneReplica(t *testing.T) {
	const interval = 2 * time.Second
	c := startCluster(t, func(cfg *config.Server) { cfg.Encryption.KeyAccessCheckInterval = interval })
	a, b := c.replicas[0], c.replicas[1]
	auth := &authn.Basic{Username: "admin", Password: c.password}
	onA := []remote.Option{remote.WithAuth(auth), remote.WithTransport(a.Client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
	img := randomImage(t, 64<<10)
	ref, _ := name.ParseReference(a.Addr + "/team/app:v1")
	if err := remote.Write(ref, img, onA...); err != nil {
		t.Fatal(err)
	}
	pullVerified(t, ref, img, onA...)

	mgmtB := adminEnv(t, b, c.password)
	sys := mgmtB.SystemIdentity(t)
	mgmtB.MustDo(t, "DELETE", "/coffer/v1/vaults/coffer-platform/access-policies/"+sys, nil, nil)
	took := vaulttest.Eventually(t, interval+5*time.Second, "replica A refuses reads after the revocation on B", func() error {
		err := readImage(ref, onA...)
		var terr *transport.Error
		if err == nil {
			return errors.New("replica A still serves the content")
		}
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusForbidden || !strings.Contains(err.Error(), "cannot use") {
			return fmt.Errorf("replica A after the revocation: %v, want 403 naming the key it cannot use", err)
		}
		return nil
	})
	t.Logf("replica A refused reads %s after replica B revoked (interval %s)", took.Round(10*time.Millisecond), interval)

	mgmtB.SetPolicy(t, "coffer-platform", sys, "get", "wrapKey", "unwrapKey")
	vaulttest.Eventually(t, interval+5*time.Second, "replica A reads again after access restored on B", func() error {
		return readImage(ref, onA...)
	})
}

// readImage pulls ref's manifest and reads every layer to its end.
func readImage(ref name.Reference, opts ...remote.Option) error {
	img, err := remote.Image(ref, opts...)
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		r, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, r)
		r.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// adminEnv logs in to inst's management API as the administrator.
func adminEnv(t *testing.T, inst *servertest.Instance, password string) *vaulttest.Env {
	t.Helper()
	return &vaulttest.Env{Inst: inst, Token: inst.ManagementToken(t, password), HTTP: inst.Client}
}

// TestReplicaKilledDuringPushes: replica A is a `coffer serve` process pushed to by two
// clients; it is SIGKILLed while pushes are in flight. Every push A acknowledged pulls
// intact (digests verified) from replica B, which shares its database and bucket.
func TestReplicaKilledDuringPushes(t *testing.T) {
	pg := pgtest.Start(t)
	dbURL := pg.URL(pg.NewDatabase(t))
	bucket := s3test.Start(t, "coffer")
	secret := filepath.Join(t.TempDir(), "s3-secret")
	if err := os.WriteFile(secret, []byte(s3test.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rootKey := filepath.Join(t.TempDir(), "vault-root.key")
	root, _, err := vault.LoadRootKeyWith(t.Context(), rootKey, "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	clear(root)
	blobs := config.BlobStore{URL: "s3://coffer/registry", S3Endpoint: bucket.Endpoint, S3Region: "us-east-1",
		S3PathStyle: true, S3AccessKeyID: s3test.AccessKey, S3SecretAccessKeyFile: secret}
	b := servertest.Start(t, func(c *config.Server) {
		c.Metadata, c.Vault.RootKeyFile, c.BlobStore = dbURL, rootKey, blobs
	})
	dirA := t.TempDir()
	a := servertest.StartProcess(t, dirA, nil, "--data-dir", filepath.Join(dirA, "data"), "--listen", "127.0.0.1:0",
		"--metadata", dbURL, "--vault-root-key-file", rootKey,
		"--blob-store", blobs.URL, "--s3-endpoint", blobs.S3Endpoint, "--s3-region", blobs.S3Region, "--s3-path-style",
		"--s3-access-key-id", blobs.S3AccessKeyID, "--s3-secret-access-key-file", secret)
	caA, err := os.ReadFile(filepath.Join(dirA, "data", "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	poolA := x509.NewCertPool()
	poolA.AppendCertsFromPEM(caA)
	trA := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: poolA}}
	auth := &authn.Basic{Username: "admin", Password: b.AdminPassword}
	addrA := strings.TrimPrefix(a.URL, "https://")

	var mu sync.Mutex
	acked := map[string]v1.Image{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tag := fmt.Sprintf("w%d-%d", w, i)
				img := randomImage(t, 256<<10, 4096)
				ref, _ := name.ParseReference(addrA + "/team/app:" + tag)
				if err := remote.Write(ref, img, remote.WithAuth(auth), remote.WithTransport(trA), remote.WithRetryBackoff(remote.Backoff{Steps: 1})); err != nil {
					continue // not acknowledged (A is gone, or going)
				}
				mu.Lock()
				acked[tag] = img
				mu.Unlock()
			}
		}()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d pushes acknowledged in 2 minutes", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := a.Cmd.Process.Kill(); err != nil { // SIGKILL, with pushes in flight
		t.Fatal(err)
	}
	a.Cmd.Wait()
	close(stop)
	wg.Wait()

	onB := []remote.Option{remote.WithAuth(auth), remote.WithTransport(b.Client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
	for tag, img := range acked {
		ref, _ := name.ParseReference(b.Addr + "/team/app:" + tag)
		pullVerified(t, ref, img, onB...)
	}
	t.Logf("%d pushes acknowledged by the killed replica pull intact from the other", len(acked))
}
