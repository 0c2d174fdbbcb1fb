//go:build cgo

// These tests run HSM-backed vaults end to end: a real Coffer server (servertest) with a
// SoftHSM2 token, driven by the azkeys SDK and the registry's own client.
package hsm_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/vault/hsm/hsmtest"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

var allPerms = []string{"get", "list", "create", "update", "import", "delete", "recover", "backup", "restore", "purge",
	"wrapKey", "unwrapKey", "encrypt", "decrypt", "sign", "verify", "rotate", "getrotationpolicy", "setrotationpolicy"}

func withHSM(tok hsmtest.Token, more func(*config.Server)) func(*config.Server) {
	return func(c *config.Server) {
		c.Vault.HSMModule, c.Vault.HSMToken, c.Vault.HSMPinFile = tok.Module, tok.Token, tok.PinFile
		if more != nil {
			more(c)
		}
	}
}

func sdkClient(t *testing.T, e *vaulttest.Env, vaultName string, p vaulttest.Principal) *azkeys.Client {
	t.Helper()
	c, err := azkeys.NewClient(e.HostURL(vaultName), e.Credential(t, p), &azkeys.ClientOptions{
		ClientOptions: policy.ClientOptions{Transport: e.HTTP, Retry: policy.RetryOptions{MaxRetries: -1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func keyError(t *testing.T, err error, status int) *azcore.ResponseError {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != status {
		t.Fatalf("want HTTP %d, got %v", status, err)
	}
	return re
}

// refsInToken counts the objects in the token's storage (SoftHSM keeps one file each).
func refsInToken(t *testing.T, tok hsmtest.Token) int {
	t.Helper()
	n := 0
	filepath.Walk(tok.Dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".object") {
			n++
		}
		return nil
	})
	return n
}

func TestHSMVaultThroughSDK(t *testing.T) {
	tok := hsmtest.New(t, "coffer-e2e")
	e := vaulttest.Start(t, withHSM(tok, nil))
	ctx := context.Background()
	e.CreateVault(t, "premium", map[string]any{"hsm": true, "softDeleteRetentionInDays": 7})
	e.CreateVault(t, "standard", nil)
	app := e.ServicePrincipal(t, "app")
	e.SetPolicy(t, "premium", app.ObjectID, allPerms...)
	e.SetPolicy(t, "standard", app.ObjectID, allPerms...)
	c := sdkClient(t, e, "premium", app)
	before := refsInToken(t, tok)

	created, err := c.CreateKey(ctx, "kek", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr[int32](2048)}, nil)
	if err != nil {
		t.Fatalf("create RSA-HSM: %v", err)
	}
	if *created.Key.Kty != azkeys.KeyTypeRSAHSM || len(created.Key.N) != 256 || created.Key.D != nil {
		t.Fatalf("created key: %+v", created.Key)
	}
	if created.Attributes.HSMPlatform == nil || !strings.Contains(*created.Attributes.HSMPlatform, "SoftHSM") {
		t.Fatalf("hsmPlatform does not say the key is in the token: %v", created.Attributes.HSMPlatform)
	}
	if got := refsInToken(t, tok); got <= before {
		t.Fatalf("token objects: %d before, %d after creating an RSA-HSM key", before, got)
	}
	// The same type in a vault without --hsm stays in software, and says so.
	soft, err := sdkClient(t, e, "standard", app).CreateKey(ctx, "soft", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM)}, nil)
	if err != nil || soft.Attributes.HSMPlatform != nil {
		t.Fatalf("software RSA-HSM key: %v %v", err, soft.Attributes.HSMPlatform)
	}

	// Wrap and unwrap with RSA-OAEP (the token's algorithm); RSA-OAEP-256 is refused naming
	// the token's limit.
	secret := make([]byte, 32)
	rand.Read(secret)
	v1 := created.Key.KID.Version()
	w, err := c.WrapKey(ctx, "kek", v1, azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP), Value: secret}, nil)
	if err != nil {
		t.Fatalf("wrap: %v", err)
	}
	u, err := c.UnwrapKey(ctx, "kek", v1, azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP), Value: w.Result}, nil)
	if err != nil || hex.EncodeToString(u.Result) != hex.EncodeToString(secret) {
		t.Fatalf("unwrap: %v", err)
	}
	_, err = c.WrapKey(ctx, "kek", v1, azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: secret}, nil)
	re := keyError(t, err, http.StatusBadRequest)
	if re.ErrorCode != "BadParameter" || !strings.Contains(err.Error(), "SHA-1 only") || !strings.Contains(err.Error(), "AlgorithmNotSupportedByHSM") {
		t.Fatalf("RSA-OAEP-256 refusal does not name the token's limit: %v", err)
	}

	// EC-HSM sign in the token, verify.
	ec, err := c.CreateKey(ctx, "signer", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}, nil)
	if err != nil {
		t.Fatalf("create EC-HSM: %v", err)
	}
	digest := sha256.Sum256([]byte("release v1"))
	sig, err := c.Sign(ctx, "signer", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	ver, err := c.Verify(ctx, "signer", "", azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Digest: digest[:], Signature: sig.Result}, nil)
	if err != nil || ver.Value == nil || !*ver.Value {
		t.Fatalf("verify: %v", err)
	}
	if ec.Attributes.HSMPlatform == nil {
		t.Fatal("EC-HSM key does not say it lives in the token")
	}

	// Rotate: a new version, in the token; the old one still unwraps.
	rot, err := c.RotateKey(ctx, "kek", nil)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	v2 := rot.Key.KID.Version()
	if v2 == v1 || rot.Attributes.HSMPlatform == nil {
		t.Fatalf("rotated version %s (was %s), platform %v", v2, v1, rot.Attributes.HSMPlatform)
	}
	if _, err := c.UnwrapKey(ctx, "kek", v1, azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP), Value: w.Result}, nil); err != nil {
		t.Fatalf("unwrap with the old version after rotation: %v", err)
	}

	// Backup is refused: the material cannot leave the token.
	_, err = c.BackupKey(ctx, "kek", nil)
	if re := keyError(t, err, http.StatusForbidden); !strings.Contains(err.Error(), "HSM") {
		t.Fatalf("backup refusal: %v %v", re, err)
	}

	// Soft delete, recover (still works), delete again, purge: the token objects are gone.
	objs := refsInToken(t, tok)
	if _, err := c.DeleteKey(ctx, "kek", nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := c.UnwrapKey(ctx, "kek", v1, azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP), Value: w.Result}, nil); err == nil {
		t.Fatal("a deleted key unwraps")
	}
	if refsInToken(t, tok) != objs {
		t.Fatal("soft delete changed the token")
	}
	if _, err := c.RecoverDeletedKey(ctx, "kek", nil); err != nil {
		t.Fatalf("recover: %v", err)
	}
	if _, err := c.UnwrapKey(ctx, "kek", v1, azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP), Value: w.Result}, nil); err != nil {
		t.Fatalf("unwrap after recover: %v", err)
	}
	if _, err := c.DeleteKey(ctx, "kek", nil); err != nil {
		t.Fatalf("delete again: %v", err)
	}
	if _, err := c.PurgeDeletedKey(ctx, "kek", nil); err != nil {
		t.Fatalf("purge: %v", err)
	}
	// Two versions, each a private and a public object.
	if got := refsInToken(t, tok); got != objs-4 {
		t.Fatalf("token objects after purging a key of two versions: %d, want %d", got, objs-4)
	}

	// Importing a key as HSM-protected into an HSM vault is refused: it existed outside
	// the token.
	_, err = c.ImportKey(ctx, "imported", azkeys.ImportKeyParameters{HSM: to.Ptr(true), Key: &azkeys.JSONWebKey{
		Kty: to.Ptr(azkeys.KeyTypeOct), K: secret}}, nil)
	if re := keyError(t, err, http.StatusBadRequest); !strings.Contains(err.Error(), "cannot be imported") {
		t.Fatalf("HSM import: %v %v", re, err)
	}
}

// TestHSMVaultNeedsServerHSM: a server without an HSM refuses a vault created with --hsm.
func TestHSMVaultNeedsServerHSM(t *testing.T) {
	e := vaulttest.Start(t, nil)
	err := e.Do("POST", "/coffer/v1/vaults", map[string]any{"name": "premium", "hsm": true}, nil)
	if err == nil || !strings.Contains(err.Error(), "--hsm-module") {
		t.Fatalf("HSM vault on a server without an HSM: %v", err)
	}
}

// TestHSMAllVaults: with --hsm-all-vaults, a vault created without --hsm keeps its -HSM
// keys in the token too, and its other keys in software.
func TestHSMAllVaults(t *testing.T) {
	tok := hsmtest.New(t, "coffer-all")
	e := vaulttest.Start(t, withHSM(tok, func(c *config.Server) { c.Vault.HSMAllVaults = true }))
	e.CreateVault(t, "plain", nil)
	var who struct {
		ID string `json:"id"`
	}
	e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	e.SetPolicy(t, "plain", who.ID, "create", "get")
	var k struct {
		Attributes struct {
			HSMPlatform string `json:"hsmPlatform"`
		} `json:"attributes"`
	}
	e.MustDo(t, "POST", "/coffer/v1/vaults/plain/keys/h/create", map[string]any{"kty": "EC-HSM"}, &k)
	if !strings.Contains(k.Attributes.HSMPlatform, "SoftHSM") {
		t.Fatalf("EC-HSM key of a vault without --hsm under --hsm-all-vaults: platform %q", k.Attributes.HSMPlatform)
	}
	var soft struct {
		Attributes map[string]any `json:"attributes"`
	}
	e.MustDo(t, "POST", "/coffer/v1/vaults/plain/keys/s/create", map[string]any{"kty": "EC"}, &soft)
	if p, ok := soft.Attributes["hsmPlatform"]; ok || soft.Attributes == nil {
		t.Fatalf("EC key: platform %v (%v)", p, soft.Attributes)
	}
}

// TestAutoUnseal: the root key sealed by the token; the server restarts and serves keys;
// the file alone does not hold the key; with the token gone the server refuses to start.
func TestAutoUnseal(t *testing.T) {
	tok := hsmtest.New(t, "coffer-unseal")
	dir := t.TempDir()
	mut := withHSM(tok, func(c *config.Server) { c.DataDir = dir; c.Vault.RootKeyHSM = true })
	e := vaulttest.Start(t, mut)
	e.CreateVault(t, "team", nil)
	app := e.ServicePrincipal(t, "app")
	e.SetPolicy(t, "team", app.ObjectID, allPerms...)
	ctx := context.Background()
	c := sdkClient(t, e, "team", app)
	// A software key: its material is sealed under the vault root key.
	if _, err := c.CreateKey(ctx, "k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil); err != nil {
		t.Fatal(err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	w, err := c.WrapKey(ctx, "k", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Inst.Stop()

	rootFile := filepath.Join(dir, "keys", "vault-root.key")
	raw, err := os.ReadFile(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(raw), "coffer-vault-root-key-hsm-v1:") {
		t.Fatalf("root-key file is not sealed: %.40q", raw)
	}
	// The file alone: a server without the HSM refuses it, naming the cause.
	cfg := e.Inst.Config
	cfg.Vault.HSMModule, cfg.Vault.HSMToken, cfg.Vault.HSMPinFile, cfg.Vault.RootKeyHSM = "", "", "", false
	if _, err := servertest.StartConfig(cfg); err == nil || !strings.Contains(err.Error(), "sealed by an HSM") {
		t.Fatalf("start with the sealed file and no HSM: %v", err)
	}

	// Restart with the token: the key unwraps what it wrapped before.
	e2 := vaulttest.Start(t, mut)
	c2 := sdkClient(t, e2, "team", app)
	u, err := c2.UnwrapKey(ctx, "k", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: w.Result}, nil)
	if err != nil || string(u.Result) != string(secret) {
		t.Fatalf("unwrap after an auto-unsealed restart: %v", err)
	}
	e2.Inst.Stop()

	// A wrong PIN, then the token removed: refused with the reason.
	bad := filepath.Join(t.TempDir(), "pin")
	os.WriteFile(bad, []byte("0000\n"), 0o600)
	cfg = e2.Inst.Config
	cfg.Vault.HSMPinFile = bad
	if _, err := servertest.StartConfig(cfg); err == nil || !strings.Contains(err.Error(), "PIN") {
		t.Fatalf("start with a wrong PIN: %v", err)
	}
	tok.Unplug(t)
	if _, err := servertest.StartConfig(e2.Inst.Config); err == nil || !strings.Contains(err.Error(), "not present") {
		t.Fatalf("start with the token removed: %v", err)
	}
}
