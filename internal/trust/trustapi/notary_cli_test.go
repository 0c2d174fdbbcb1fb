package trustapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// notaryCLI runs the Debian notary 0.7 CLI against the server as user.
type notaryCLI struct {
	t        testing.TB
	e        *env
	dir      string
	user     string
	pass     string
	extraEnv []string
}

func newNotary(t testing.TB, e *env, user, pass string) *notaryCLI {
	t.Helper()
	if _, err := exec.LookPath("notary"); err != nil {
		t.Skip("the notary CLI is not installed (apt-get install notary; scripts/test installs it)")
	}
	return &notaryCLI{t: t, e: e, dir: t.TempDir(), user: user, pass: pass}
}

func (n *notaryCLI) run(args ...string) (string, error) {
	n.t.Helper()
	full := append([]string{"-s", n.e.inst.URL, "-d", n.dir, "--tlscacert", n.e.inst.CAFile}, args...)
	cmd := exec.Command("notary", full...)
	cmd.Env = append(os.Environ(),
		"NOTARY_AUTH="+base64.StdEncoding.EncodeToString([]byte(n.user+":"+n.pass)),
		"NOTARY_ROOT_PASSPHRASE=root-pass-1234", "NOTARY_TARGETS_PASSPHRASE=targets-pass-1234",
		"NOTARY_SNAPSHOT_PASSPHRASE=snapshot-pass-1234", "NOTARY_DELEGATION_PASSPHRASE=delegation-pass-1234",
		"HOME="+n.dir)
	cmd.Env = append(cmd.Env, n.extraEnv...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (n *notaryCLI) must(args ...string) string {
	n.t.Helper()
	out, err := n.run(args...)
	if err != nil {
		n.t.Fatalf("notary %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNotaryCLI drives the notary CLI through a collection's life against coffer serve
// over HTTPS with token auth.
func TestNotaryCLI(t *testing.T) {
	e := start(t, nil)
	n := newNotary(t, e, "admin", e.inst.AdminPassword)
	gun := e.gun("team/app")
	f1 := writeFile(t, n.dir, "v1.bin", "release one")
	f2 := writeFile(t, n.dir, "v2.bin", "release two")

	// A collection that was never published has no trust data.
	if out, err := n.run("list", gun); err == nil || !strings.Contains(out, "does not have trust data") {
		t.Fatalf("list before init: %v\n%s", err, out)
	}

	n.must("init", gun)
	n.must("add", gun, "v1", f1)
	n.must("add", gun, "v2", f2)
	n.must("publish", gun)
	out := n.must("list", gun)
	if !strings.Contains(out, "v1") || !strings.Contains(out, "v2") {
		t.Fatalf("list after publish:\n%s", out)
	}
	// A second client (fresh trust dir, same server) sees the same targets.
	other := newNotary(t, e, "admin", e.inst.AdminPassword)
	out = other.must("lookup", gun, "v1")
	if !strings.Contains(out, "v1") || !strings.Contains(out, "11") { // size of "release one"
		t.Fatalf("lookup v1:\n%s", out)
	}

	n.must("remove", gun, "v2")
	n.must("publish", gun)
	out = other.must("list", gun)
	if strings.Contains(out, "v2") || !strings.Contains(out, "v1") {
		t.Fatalf("list after remove:\n%s", out)
	}

	// The snapshot key moves to the server, then the timestamp key is rotated there.
	n.must("key", "rotate", gun, "snapshot", "-r")
	n.must("add", gun, "v3", f2)
	n.must("publish", gun)
	n.must("key", "rotate", gun, "timestamp", "-r")
	if out := other.must("list", gun); !strings.Contains(out, "v3") {
		t.Fatalf("list after server-managed snapshot:\n%s", out)
	}
	// A root key rotation: signed by the old and the new root key.
	n.must("key", "rotate", gun, "root")
	if out := other.must("list", gun); !strings.Contains(out, "v3") {
		t.Fatalf("list after root rotation:\n%s", out)
	}

	// A delegation: a second signer publishes into targets/releases.
	signer := newNotary(t, e, "admin", e.inst.AdminPassword)
	cert, keyFile := delegationKey(t, signer.dir, "releases")
	n.must("delegation", "add", gun, "targets/releases", cert, "--all-paths")
	n.must("publish", gun)
	signer.must("key", "import", keyFile, "--role", "targets/releases", "--gun", gun)
	f3 := writeFile(t, signer.dir, "v4.bin", "release four")
	signer.must("add", gun, "v4", f3, "--roles", "targets/releases")
	signer.must("publish", gun)
	out = other.must("list", gun)
	if !strings.Contains(out, "v4") || !strings.Contains(out, "targets/releases") {
		t.Fatalf("list after delegated publish:\n%s", out)
	}

	// delete --remote removes the collection and its server-held keys.
	n.must("delete", gun, "--remote")
	fresh := newNotary(t, e, "admin", e.inst.AdminPassword)
	if out, err := fresh.run("list", gun); err == nil || !strings.Contains(out, "does not have trust data") {
		t.Fatalf("list after delete --remote: %v\n%s", err, out)
	}
}

// delegationKey writes a delegate's key (unencrypted PEM, which notary key import takes)
// and its self-signed certificate, which the collection owner adds as the delegation's key.
func delegationKey(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	certFile = writeFile(t, dir, name+".crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile = writeFile(t, dir, name+".key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})))
	return certFile, keyFile
}
