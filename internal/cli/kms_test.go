package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/servertest"
)

// TestKMSClusterCommands: create, show -o json in the securityProfile shape, update (PMK →
// CMK refused without access, then the PMK decrypt-only), list, rotate-now, delete.
func TestKMSClusterCommands(t *testing.T) {
	inst := servertest.Start(t, nil)
	asAdmin(t, inst)
	var sp struct {
		ClientID string `json:"clientId"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "sp", "create", "kms-prod", "-o", "json")), &sp); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "kms", "cluster", "create", "prod", "--key-management", "XMK", "--identity", "kms-prod"); err == nil || !strings.Contains(err.Error(), "PMK") {
		t.Fatalf("bad key management: %v", err)
	}
	mustCLI(t, "kms", "cluster", "create", "prod", "--identity", "kms-prod", "-o", "json")
	if _, err := runCLI(t, "kms", "cluster", "create", "prod", "--identity", "kms-prod"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second create: %v", err)
	}
	// The exact JSON shape of show: the seed's securityProfile plus Coffer's state.
	var show map[string]any
	if err := json.Unmarshal([]byte(mustCLI(t, "kms", "cluster", "show", "prod", "-o", "json")), &show); err != nil {
		t.Fatal(err)
	}
	sp0 := show["securityProfile"].(map[string]any)
	kv := sp0["azureKeyVaultKms"].(map[string]any)
	if kv["enabled"] != true || !strings.HasSuffix(kv["keyId"].(string), "/keys/kms-prod") || kv["keyVaultNetworkAccess"] != "Public" ||
		!strings.HasPrefix(kv["keyVaultResourceId"].(string), "https://coffer-kms.") {
		t.Fatalf("azureKeyVaultKms = %v", kv)
	}
	if ie := sp0["kubernetesResourceObjectEncryptionProfile"].(map[string]any)["infrastructureEncryption"]; ie != "Disabled" {
		t.Fatalf("infrastructureEncryption = %v", ie)
	}
	if show["keyManagement"] != "PMK" || show["identity"] != "kms-prod" {
		t.Fatalf("show = %v", show)
	}
	if _, ok := show["decryptOnlyKeys"].([]any); !ok {
		t.Fatalf("decryptOnlyKeys missing: %v", show)
	}
	// A CMK the plugin's identity cannot use is refused when it is configured.
	mustCLI(t, "vault", "create", "team")
	if _, err := runCLI(t, "kms", "cluster", "update", "prod", "--key-management", "CMK", "--key-id", "https://team.vault.localhost/keys/k8s/abc"); err == nil || !strings.Contains(err.Error(), "versionless") {
		t.Fatalf("versioned CMK: %v", err)
	}
	if out := mustCLI(t, "kms", "cluster", "list"); !strings.Contains(out, "prod") || !strings.Contains(out, "PMK") {
		t.Fatalf("list = %s", out)
	}
	if out := mustCLI(t, "kms", "rotate-now", "--cluster", "prod", "-o", "json"); !strings.Contains(out, `"rotated": true`) {
		t.Fatalf("rotate-now = %s", out)
	}
	if _, err := runCLI(t, "kms", "rotate-now"); err == nil {
		t.Fatal("rotate-now with nothing to do succeeded")
	}
	if _, err := runCLI(t, "kms", "reencrypt"); err == nil || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Fatalf("reencrypt without kubeconfig: %v", err)
	}
	mustCLI(t, "kms", "cluster", "delete", "prod")
	if _, err := runCLI(t, "kms", "cluster", "show", "prod"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("show after delete: %v", err)
	}
}
