package cli_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/servertest"
)

func TestRegistrySignatureCommands(t *testing.T) {
	inst := servertest.Start(t, nil)
	t.Setenv("COFFER_CONFIG_DIR", t.TempDir())
	t.Setenv("COFFER_SERVER", inst.URL)
	t.Setenv("COFFER_CA_FILE", inst.CAFile)
	t.Setenv("COFFER_USERNAME", "admin")
	t.Setenv("COFFER_PASSWORD", inst.AdminPassword)
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	pub := filepath.Join(dir, "cosign.pub")
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)

	a := decode[wire.SignatureAnchor](t, mustCLI(t, "registry", "signature", "anchor", "add", "ci", "--kind", "cosign", "--file", pub, "-o", "json"))
	if a.Name != "ci" || a.Kind != "cosign" || len(a.Fingerprints) != 1 {
		t.Fatalf("anchor add = %+v", a)
	}
	if out := mustCLI(t, "registry", "signature", "anchor", "list"); !strings.Contains(out, "ci") || !strings.Contains(out, "cosign") {
		t.Fatalf("anchor list:\n%s", out)
	}
	policy := filepath.Join(dir, "policy.json")
	os.WriteFile(policy, []byte(`{"repositories":[{"scope":"prod/*","mode":"enforce","cosignKeys":["ci"]}]}`), 0o600)
	p := decode[wire.SignaturePolicy](t, mustCLI(t, "registry", "signature", "policy", "set", "--file", policy, "-o", "json"))
	if len(p.Repositories) != 1 || p.Repositories[0].Mode != "enforce" || p.Version == 0 {
		t.Fatalf("policy set = %+v", p)
	}
	if out := mustCLI(t, "registry", "signature", "policy", "show"); !strings.Contains(out, "prod/*") || !strings.Contains(out, "enforce") {
		t.Fatalf("policy show:\n%s", out)
	}
	os.WriteFile(policy, []byte(`{"repositories":[{"scope":"prod/*","mode":"block"}]}`), 0o600)
	if _, err := runCLI(t, "registry", "signature", "policy", "set", "--file", policy); err == nil || !strings.Contains(err.Error(), "off, audit or enforce") {
		t.Fatalf("bad policy: %v", err)
	}
	if _, err := runCLI(t, "registry", "signature", "anchor", "delete", "ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "registry", "signature", "anchor", "delete", "ci"); err == nil {
		t.Fatal("deleting a deleted anchor succeeded")
	}
}
