package vault_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/vault"
)

// A root-key file sealed by an HSM is refused, naming the cure, by a server without one;
// asking to seal without an HSM is refused too.
func TestSealedRootKeyNeedsTheHSM(t *testing.T) {
	file := filepath.Join(t.TempDir(), "vault-root.key")
	if err := os.WriteFile(file, []byte("coffer-vault-root-key-hsm-v1:AAAA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := vault.LoadRootKeyWith(context.Background(), file, "", nil, false)
	if err == nil || !strings.Contains(err.Error(), "sealed by an HSM") || !strings.Contains(err.Error(), "--hsm-module") {
		t.Fatalf("sealed file without the HSM: %v", err)
	}
	if _, _, err := vault.LoadRootKey(file, ""); err == nil {
		t.Fatal("LoadRootKey read a sealed file")
	}
	if _, _, err := vault.LoadRootKeyWith(context.Background(), filepath.Join(t.TempDir(), "new.key"), "", nil, true); err == nil || !strings.Contains(err.Error(), "needs the HSM") {
		t.Fatalf("seal without an HSM: %v", err)
	}
}
