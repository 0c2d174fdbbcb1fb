package kmsplugin_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// managedEnv is the managed-identity environment of a process on the Coffer host: the
// server's /msi/token and its identity header, as the Azure SDK reads them. clientID empty:
// the system-assigned identity.
func managedEnv(t *testing.T, e *vaulttest.Env, clientID string) (env []string, header string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(e.Inst.DataDir, "keys", "identity-header"))
	if err != nil {
		t.Fatal(err)
	}
	header = strings.TrimSpace(string(raw))
	env = []string{"IDENTITY_ENDPOINT=" + e.Inst.URL + "/msi/token", "IDENTITY_HEADER=" + header}
	if clientID != "" {
		env = append(env, "AZURE_CLIENT_ID="+clientID)
	}
	return env, header
}

// roundTrip wraps a seed over the socket and unwraps it again.
func roundTrip(t *testing.T, kc kmsapi.KeyManagementServiceClient, wantKeyPrefix string) {
	t.Helper()
	ctx := context.Background()
	seed := bytes.Repeat([]byte{7}, 32)
	enc, err := kc.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed, Uid: "mi"})
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	if !strings.HasPrefix(enc.KeyId, wantKeyPrefix) {
		t.Fatalf("Encrypt under %s, want a version of %s", enc.KeyId, wantKeyPrefix)
	}
	dec, err := kc.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "mi"})
	if err != nil || !bytes.Equal(dec.Plaintext, seed) {
		t.Fatalf("Decrypt: %v (plaintext equal: %v)", err, err == nil && bytes.Equal(dec.Plaintext, seed))
	}
}

// TestManagedIdentityPlugin: `coffer kms-plugin` with no client secret and the server's
// managed-identity endpoint in its environment acts as a user-assigned managed identity for
// the Coffer server (settings, PMK wraps through Coffer) and for the vault (a CMK in a
// role-based vault reached directly with the identity's token): Status ok, Encrypt and
// Decrypt work; the identity's "Key Vault Crypto User" role removed, Status fails and
// Encrypt is refused; the audit trail names the managed identity.
func TestManagedIdentityPlugin(t *testing.T) {
	e := vaulttest.Start(t, nil)
	var mi wire.ManagedIdentity
	e.MustDo(t, "POST", "/coffer/v1/managedIdentities", map[string]any{"name": "kms-mi"}, &mi)
	e.MustDo(t, "POST", "/coffer/v1/kms/clusters", wire.KMSClusterRequest{Name: "mi", KeyManagement: "PMK", Identity: mi.ClientID}, nil)
	env, header := managedEnv(t, e, mi.ClientID)
	sock := filepath.Join(t.TempDir(), "kms.sock")
	p := startPluginEnv(t, e, env, header, "mi", sock)
	pmk := strings.TrimPrefix(p.waitHealth(t, 200, "ok https://"), "ok ")
	kc := p.grpc(t)
	if st, err := kc.Status(context.Background(), &kmsapi.StatusRequest{}); err != nil || st.Healthz != "ok" || st.KeyId != pmk {
		t.Fatalf("Status: %+v %v", st, err)
	}
	roundTrip(t, kc, pmk[:strings.LastIndex(pmk, "/")])
	// The vault's audit trail records the wraps as the managed identity.
	var audit wire.List[wire.AuditRecord]
	e.MustDo(t, "GET", "/coffer/v1/audit?vault=coffer-kms&limit=10000", nil, &audit)
	byMI := 0
	for _, r := range audit.Value {
		if r.PrincipalID == mi.PrincipalID && strings.Contains(strings.ToLower(r.Operation), "wrap") {
			byMI++
		}
	}
	if byMI == 0 {
		t.Fatalf("no wrap or unwrap audited as the managed identity %s in %d records", mi.PrincipalID, len(audit.Value))
	}

	// A CMK in a role-based vault on a port of its own, reached directly (Public).
	port := freePort(t)
	e.CreateVault(t, "rbac", map[string]any{"port": port, "enableRbacAuthorization": true})
	e.MustDo(t, "POST", "/coffer/v1/vaults/rbac/keys/k8s/create", wire.CreateKeyRequest{Kty: "RSA", Size: 2048}, nil)
	cmk := fmt.Sprintf("https://127.0.0.1:%d/keys/k8s", port)
	if err := e.Do("PATCH", "/coffer/v1/kms/clusters/mi", wire.KMSClusterRequest{KeyManagement: "CMK", KeyID: cmk}, nil); err == nil || !strings.Contains(err.Error(), "cannot use key") {
		t.Fatalf("CMK before the managed identity holds the role: %v, want refused", err)
	}
	var ra struct {
		ID string `json:"id"`
	}
	e.MustDo(t, "POST", "/coffer/v1/role-assignments", map[string]any{"role": "Key Vault Crypto User", "assignee": mi.PrincipalID, "scope": "/vaults/rbac"}, &ra)
	e.MustDo(t, "PATCH", "/coffer/v1/kms/clusters/mi", wire.KMSClusterRequest{KeyManagement: "CMK", KeyID: cmk}, nil)
	p.poll(t)
	v := strings.TrimPrefix(p.waitHealth(t, 200, "ok "+cmk+"/"), "ok ")
	roundTrip(t, kc, cmk)
	if st, err := kc.Status(context.Background(), &kmsapi.StatusRequest{}); err != nil || st.KeyId != v {
		t.Fatalf("Status on the CMK: %+v %v, want %s", st, err, v)
	}

	// The role removed: refused, with the vault's reason; no restart needed to recover.
	e.MustDo(t, "DELETE", "/coffer/v1/role-assignments/"+ra.ID, nil, nil)
	p.waitHealth(t, 503, "denied")
	if _, err := kc.Status(context.Background(), &kmsapi.StatusRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Status without the role: %v, want Unavailable", err)
	}
	if _, err := kc.Encrypt(context.Background(), &kmsapi.EncryptRequest{Plaintext: make([]byte, 32), Uid: "t"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Encrypt without the role: %v, want PermissionDenied", err)
	}
	e.MustDo(t, "POST", "/coffer/v1/role-assignments", map[string]any{"role": "Key Vault Crypto User", "assignee": mi.PrincipalID, "scope": "/vaults/rbac"}, nil)
	p.waitHealth(t, 200, "ok "+v)
	roundTrip(t, kc, cmk)
}

// TestSystemAssignedIdentityPlugin: with no client id, the plugin asks the managed-identity
// endpoint for the host's system-assigned identity (Coffer's system identity), which a
// cluster may name; a cluster whose identity is another one refuses it.
func TestSystemAssignedIdentityPlugin(t *testing.T) {
	e := vaulttest.Start(t, nil)
	e.MustDo(t, "POST", "/coffer/v1/kms/clusters", wire.KMSClusterRequest{Name: "sys", KeyManagement: "PMK", Identity: identity.SystemIdentityName}, nil)
	env, header := managedEnv(t, e, "")
	sock := filepath.Join(t.TempDir(), "kms.sock")
	p := startPluginEnv(t, e, env, header, "sys", sock)
	pmk := strings.TrimPrefix(p.waitHealth(t, 200, "ok https://"), "ok ")
	roundTrip(t, p.grpc(t), pmk[:strings.LastIndex(pmk, "/")])

	// The system identity is not the identity of cluster other: its settings are refused.
	sp := e.ServicePrincipal(t, "kms-other")
	e.MustDo(t, "POST", "/coffer/v1/kms/clusters", wire.KMSClusterRequest{Name: "other", KeyManagement: "PMK", Identity: sp.ClientID}, nil)
	sock2 := filepath.Join(t.TempDir(), "kms2.sock")
	p2 := startPluginEnv(t, e, env, header, "other", sock2)
	p2.waitHealth(t, 503, "")
	if _, err := p2.grpc(t).Status(context.Background(), &kmsapi.StatusRequest{}); err == nil {
		t.Fatal("a plugin acting as the system identity got Status ok for another identity's cluster")
	}
}
