//go:build cgo

package hsm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/cli"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/vault/hsm/hsmtest"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

func coffer(t *testing.T, args ...string) string {
	t.Helper()
	root := cli.NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("coffer %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestCLI: `coffer vault create --hsm` makes an HSM vault and `coffer vault key show` says
// where a key lives.
func TestCLI(t *testing.T) {
	tok := hsmtest.New(t, "coffer-cli")
	e := vaulttest.Start(t, withHSM(tok, nil))
	t.Setenv("COFFER_CONFIG_DIR", t.TempDir())
	t.Setenv("COFFER_SERVER", e.Inst.URL)
	t.Setenv("COFFER_CA_FILE", e.Inst.CAFile)
	t.Setenv("COFFER_USERNAME", "admin")
	t.Setenv("COFFER_PASSWORD", e.Inst.AdminPassword)

	var v wire.Vault
	if err := json.Unmarshal([]byte(coffer(t, "vault", "create", "premium", "--hsm", "-o", "json")), &v); err != nil || !v.HSM {
		t.Fatalf("vault create --hsm: %+v %v", v, err)
	}
	var who struct {
		ID string `json:"id"`
	}
	e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	e.SetPolicy(t, "premium", who.ID, "create", "get")
	coffer(t, "vault", "key", "create", "premium", "inhsm", "--kty", "RSA-HSM")
	coffer(t, "vault", "key", "create", "premium", "soft", "--kty", "RSA")
	if out := coffer(t, "vault", "key", "show", "premium", "inhsm"); !strings.Contains(out, "HSM: PKCS#11 SoftHSM") {
		t.Fatalf("key show does not say the key is in the HSM:\n%s", out)
	}
	if out := coffer(t, "vault", "key", "show", "premium", "soft"); !strings.Contains(out, "software") {
		t.Fatalf("key show does not say the key is in software:\n%s", out)
	}
	var k wire.Key
	if err := json.Unmarshal([]byte(coffer(t, "vault", "key", "show", "premium", "inhsm", "-o", "json")), &k); err != nil || !strings.Contains(k.Attributes.HSMPlatform, "SoftHSM") {
		t.Fatalf("key show -o json: %+v %v", k.Attributes, err)
	}
}
