package cli_test

import (
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/servertest"
)

func TestRegistryEncryptionCommands(t *testing.T) {
	inst := servertest.Start(t, nil)
	asAdmin(t, inst)

	type show struct {
		Status             string `json:"status"`
		KeySource          string `json:"keySource"`
		KeyAccessible      bool   `json:"keyAccessible"`
		RootKeyGeneration  uint32 `json:"rootKeyGeneration"`
		KeyVaultProperties struct {
			Identity               string `json:"identity"`
			KeyIdentifier          string `json:"keyIdentifier"`
			VersionedKeyIdentifier string `json:"versionedKeyIdentifier"`
			KeyRotationEnabled     bool   `json:"keyRotationEnabled"`
		} `json:"keyVaultProperties"`
	}
	// show prints JSON even without -o json.
	st := decode[show](t, mustCLI(t, "registry", "encryption", "show"))
	if st.Status != "disabled" || st.KeySource != "platform" || !st.KeyAccessible || st.KeyVaultProperties.Identity != "[system]" ||
		!strings.HasSuffix(st.KeyVaultProperties.KeyIdentifier, "/keys/registry-encryption") || !st.KeyVaultProperties.KeyRotationEnabled {
		t.Fatalf("show = %+v", st)
	}
	_, err := runCLI(t, "registry", "encryption", "enable", "--key-encryption-key", "https://nowhere.vault.localhost/secrets/x")
	if err == nil || !strings.Contains(err.Error(), "keys/NAME") {
		t.Fatalf("enable with a bad key id: %v", err)
	}
	if _, err := runCLI(t, "registry", "encryption", "enable"); err == nil || !strings.Contains(err.Error(), "key-encryption-key") {
		t.Fatalf("enable without a key: %v", err)
	}
	if _, err := runCLI(t, "registry", "encryption", "disable"); err == nil || !strings.Contains(err.Error(), "cannot be disabled") {
		t.Fatalf("disable: %v", err)
	}
	// rotate-key to the platform key's pinned version turns automatic rotation off.
	st = decode[show](t, mustCLI(t, "registry", "encryption", "rotate-key", "--key-encryption-key", st.KeyVaultProperties.VersionedKeyIdentifier))
	if st.KeyVaultProperties.KeyRotationEnabled || st.KeySource != "platform" {
		t.Fatalf("after pinning: %+v", st)
	}
	// new-root-key adds a generation under the key in use; show reports it afterwards.
	if st.RootKeyGeneration != 1 {
		t.Fatalf("a fresh registry's root-key generation = %d, want 1", st.RootKeyGeneration)
	}
	if st = decode[show](t, mustCLI(t, "registry", "encryption", "new-root-key")); st.RootKeyGeneration != 2 || !st.KeyAccessible {
		t.Fatalf("after new-root-key: %+v", st)
	}
	if st = decode[show](t, mustCLI(t, "registry", "encryption", "show")); st.RootKeyGeneration != 2 {
		t.Fatalf("show after new-root-key: %+v", st)
	}
}
