package imagecrypt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/cofferhq/coffer/internal/imagecrypt"
	"github.com/cofferhq/coffer/internal/kek/resolve"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// env is a running Coffer server with a vault on a port of its own holding an imported RSA
// key, and a service principal ("node") that may get and unwrap with it.
type env struct {
	*vaulttest.Env
	dir      string
	privPEM  string // the RSA private key (PKCS#1 PEM)
	pubPEM   string // its public key (PKIX PEM)
	keyURL   string // the imported key in the vault (versionless)
	node     vaulttest.Principal
	vaultURI string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{Env: vaulttest.Start(t, nil), dir: t.TempDir()}
	v := e.CreateVault(t, "images", map[string]any{"port": freePort(t)})
	e.vaultURI = v.VaultURI
	var who struct {
		ID string `json:"id"`
	}
	e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	e.SetPolicy(t, "images", who.ID, "get", "list", "import", "create")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e.privPEM = filepath.Join(e.dir, "priv.pem")
	e.pubPEM = filepath.Join(e.dir, "pub.pem")
	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	writeFile(t, e.privPEM, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	writeFile(t, e.pubPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	var k wire.Key
	e.MustDo(t, "PUT", "/coffer/v1/vaults/images/keys/image-key", wire.ImportKeyRequest{Key: rsaPrivateJWK(key)}, &k)
	e.keyURL = v.VaultURI + "/keys/image-key"
	e.node = e.ServicePrincipal(t, "node-1")
	e.SetPolicy(t, "images", e.node.ObjectID, "get", "unwrapKey")
	return e
}

func writeFile(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// opts are the options of a client of the registry as the administrator, reaching the
// vault as the principal p.
func (e *env) opts(t *testing.T, p vaulttest.Principal) imagecrypt.Options {
	t.Helper()
	return imagecrypt.Options{
		Registry: imagecrypt.RegistryOptions{
			HTTPClient: e.Inst.Client,
			Credential: auth.StaticCredential(e.Inst.Addr, auth.Credential{Username: "admin", Password: e.Inst.AdminPassword}),
		},
		KEKs: resolve.NewRemote(resolve.Credential{TenantID: e.TenantID, ClientID: p.ClientID, ClientSecret: p.Secret, AuthorityHost: e.Inst.URL + "/"}, e.Inst.CAFile),
	}
}

// reg is a registry reference on the server.
func (e *env) reg(repoTag string) string { return "docker://" + e.Inst.Addr + "/" + repoTag }

// audit lists the vault's audit records of an operation.
func (e *env) audit(t *testing.T, op string) []wire.AuditRecord {
	t.Helper()
	var out wire.List[wire.AuditRecord]
	e.MustDo(t, "GET", "/coffer/v1/audit?vault=images&operation="+op, nil, &out)
	return out.Value
}

// skopeo runs Debian's skopeo against the server (its CA in a cert dir).
func (e *env) skopeo(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("skopeo")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("skopeo is not installed (scripts/test installs it; CI requires it)")
		}
		t.Fatal("skopeo is required in CI: scripts/test installs it with apt-get")
	}
	certDir := filepath.Join(e.dir, "certs")
	if _, err := os.Stat(certDir); err != nil {
		os.MkdirAll(certDir, 0o700)
		ca, _ := os.ReadFile(e.Inst.CAFile)
		writeFile(t, filepath.Join(certDir, "ca.crt"), ca)
	}
	var full []string
	for _, a := range args {
		switch a {
		case "SRC-TLS":
			full = append(full, "--src-cert-dir", certDir, "--src-creds", "admin:"+e.Inst.AdminPassword)
		case "DEST-TLS":
			full = append(full, "--dest-cert-dir", certDir, "--dest-creds", "admin:"+e.Inst.AdminPassword)
		default:
			full = append(full, a)
		}
	}
	cmd := exec.Command(bin, append([]string{"--insecure-policy"}, full...)...)
	cmd.Env = append(os.Environ(), "HOME="+e.dir, "XDG_RUNTIME_DIR="+e.dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// testImage writes an OCI image of n gzip layers (random content) into an OCI layout under
// dir, tagged tag, and returns the layout reference.
func testImage(t *testing.T, dir, tag string, n int, size int64) string {
	t.Helper()
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	for range n {
		l, err := random.Layer(size, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		if base, err = mutate.AppendLayers(base, l); err != nil {
			t.Fatal(err)
		}
	}
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(base, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatal(err)
	}
	return "oci:" + dir + ":" + tag
}

// image is what a comparison needs of an image in an OCI layout.
type image struct {
	manifest ocispec.Manifest
	diffIDs  []digest.Digest
	config   digest.Digest
}

func readLayout(t *testing.T, ref string) image {
	t.Helper()
	r, err := imagecrypt.ParseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	st, err := oci.New(r.Path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, err := st.Resolve(ctx, r.Reference)
	if err != nil {
		t.Fatalf("resolve %s: %v", ref, err)
	}
	raw, err := content.FetchAll(ctx, st, d)
	if err != nil {
		t.Fatal(err)
	}
	var img image
	if err := json.Unmarshal(raw, &img.manifest); err != nil {
		t.Fatal(err)
	}
	craw, err := content.FetchAll(ctx, st, img.manifest.Config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	json.Unmarshal(craw, &cfg)
	img.diffIDs, img.config = cfg.RootFS.DiffIDs, img.manifest.Config.Digest
	return img
}

// sameLayers fails unless got has the layers (digests, plain media types) and diff_ids of want.
func sameLayers(t *testing.T, want, got image) {
	t.Helper()
	if len(want.manifest.Layers) != len(got.manifest.Layers) {
		t.Fatalf("%d layers, want %d", len(got.manifest.Layers), len(want.manifest.Layers))
	}
	for i, l := range want.manifest.Layers {
		g := got.manifest.Layers[i]
		if g.Digest != l.Digest || g.Size != l.Size || g.MediaType != l.MediaType {
			t.Errorf("layer %d = %s %s %d, want %s %s %d", i, g.MediaType, g.Digest, g.Size, l.MediaType, l.Digest, l.Size)
		}
	}
	if strings.Join(digestStrings(want.diffIDs), ",") != strings.Join(digestStrings(got.diffIDs), ",") {
		t.Errorf("diff_ids %v, want %v", got.diffIDs, want.diffIDs)
	}
}

func digestStrings(ds []digest.Digest) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.String())
	}
	return out
}

// encryptedLayers counts the +encrypted layers of an image in a layout.
func encryptedLayers(img image) int {
	n := 0
	for _, l := range img.manifest.Layers {
		if strings.HasSuffix(l.MediaType, "+encrypted") {
			n++
		}
	}
	return n
}

var _ = http.StatusOK

func otherKey(t *testing.T, path string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
}

// rsaPrivateJWK is an RSA private key as the JWK that the vault imports.
func rsaPrivateJWK(k *rsa.PrivateKey) wire.JWK {
	k.Precompute()
	return wire.JWK{Kty: "RSA", N: k.N.Bytes(), E: big.NewInt(int64(k.E)).Bytes(), D: k.D.Bytes(), P: k.Primes[0].Bytes(), Q: k.Primes[1].Bytes(),
		DP: k.Precomputed.Dp.Bytes(), DQ: k.Precomputed.Dq.Bytes(), QI: k.Precomputed.Qinv.Bytes()}
}
