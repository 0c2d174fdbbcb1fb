//go:build cgo

package hsm_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/kek/rest"
	"github.com/cofferhq/coffer/internal/vault/hsm/hsmtest"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// TestKEKOverRESTChoosesTokenAlgorithm: the REST KEK driver (what the KMS plugin and the
// image key provider use for a remote vault) wraps with an RSA-HSM key on SoftHSM by
// falling back to RSA-OAEP, records it, and unwraps; kek.Probe accepts the key.
func TestKEKOverRESTChoosesTokenAlgorithm(t *testing.T) {
	tok := hsmtest.New(t, "coffer-kek")
	e := vaulttest.Start(t, withHSM(tok, nil))
	ctx := context.Background()
	e.CreateVault(t, "premium", map[string]any{"hsm": true})
	app := e.ServicePrincipal(t, "kms")
	e.SetPolicy(t, "premium", app.ObjectID, "create", "get", "wrapKey", "unwrapKey")
	if _, err := sdkClient(t, e, "premium", app).CreateKey(ctx, "kms", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM)}, nil); err != nil {
		t.Fatal(err)
	}
	d := rest.New(e.Credential(t, app), &rest.Options{ClientOptions: policy.ClientOptions{Transport: e.HTTP, Retry: policy.RetryOptions{MaxRetries: -1}}})
	keyID := e.HostURL("premium") + "/keys/kms"
	if _, err := kek.Probe(ctx, d, keyID); err != nil {
		t.Fatalf("probe an RSA-HSM key on SoftHSM: %v", err)
	}
	secret := bytes.Repeat([]byte{7}, 32)
	kid, wrapped, err := d.WrapKey(ctx, keyID, secret)
	if err != nil {
		t.Fatal(err)
	}
	if alg, _ := kek.RecordedAlgorithm(wrapped); alg != kek.FallbackAlgorithm {
		t.Fatalf("wrapped value records %s, want %s", alg, kek.FallbackAlgorithm)
	}
	back, err := d.UnwrapKey(ctx, kid, wrapped)
	if err != nil || !bytes.Equal(back, secret) {
		t.Fatalf("unwrap: %v", err)
	}
}
