package rest_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cofferhq/coffer/internal/kek/kektest"
	"github.com/cofferhq/coffer/internal/kek/rest"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// TestAgainstCofferVault runs the KEK suite with the REST driver against a real Coffer
// server's vault, reached over HTTPS with a service principal's client-secret credential.
func TestAgainstCofferVault(t *testing.T) {
	e := vaulttest.Start(t, nil)
	ctx := context.Background()
	e.CreateVault(t, "kekvault", nil)
	admin := e.ServicePrincipal(t, "kek-admin")
	e.SetPolicy(t, "kekvault", admin.ObjectID, "get", "list", "create", "update", "delete", "rotate")
	registry := e.ServicePrincipal(t, "registry-identity")
	grant := func(t *testing.T) { e.SetPolicy(t, "kekvault", registry.ObjectID, "get", "wrapKey", "unwrapKey") }
	grant(t)

	vaultURL := e.HostURL("kekvault")
	adminClient, err := azkeys.NewClient(vaultURL, e.Credential(t, admin), &azkeys.ClientOptions{
		ClientOptions: policy.ClientOptions{Transport: e.HTTP},
	})
	if err != nil {
		t.Fatal(err)
	}
	create := func(t *testing.T, name string, kty azkeys.KeyType) string {
		t.Helper()
		p := azkeys.CreateKeyParameters{Kty: to.Ptr(kty)}
		if kty == azkeys.KeyTypeEC {
			p.Curve = to.Ptr(azkeys.CurveNameP256)
		}
		resp, err := adminClient.CreateKey(ctx, name, p, nil)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return string(*resp.Key.KID)
	}
	driver := rest.New(e.Credential(t, registry), &rest.Options{
		ClientOptions: policy.ClientOptions{Transport: e.HTTP, Retry: policy.RetryOptions{MaxRetries: -1}},
	})
	create(t, "ec-key", azkeys.KeyTypeEC)
	var n atomic.Int32
	kektest.Run(t, func(t *testing.T) kektest.Fixture {
		name := fmt.Sprintf("kek-%d", n.Add(1))
		create(t, name, azkeys.KeyTypeRSA)
		return kektest.Fixture{
			KEK:        driver,
			RSAKey:     vaultURL + "/keys/" + name,
			ECKey:      vaultURL + "/keys/ec-key",
			MissingKey: vaultURL + "/keys/no-such-key",
			NewVersion: func(t *testing.T) string {
				resp, err := adminClient.RotateKey(ctx, name, nil)
				if err != nil {
					t.Fatal(err)
				}
				return string(*resp.Key.KID)
			},
			Revoke: func(t *testing.T) {
				if err := e.Do("DELETE", "/coffer/v1/vaults/kekvault/access-policies/"+registry.ObjectID, nil, nil); err != nil {
					t.Fatal(err)
				}
			},
			Restore: grant,
			SetNetworkDenied: func(t *testing.T, denied bool) {
				rules := map[string]any{"defaultAction": "Allow"}
				if denied {
					rules = map[string]any{"defaultAction": "Deny", "ipRules": []string{"192.0.2.0/24"}}
				}
				e.MustDo(t, "PATCH", "/coffer/v1/vaults/kekvault", map[string]any{"networkAcls": rules}, nil)
			},
			SetEnabled: func(t *testing.T, on bool) {
				pager := adminClient.NewListKeyPropertiesVersionsPager(name, nil)
				for pager.More() {
					page, err := pager.NextPage(ctx)
					if err != nil {
						t.Fatal(err)
					}
					for _, kp := range page.Value {
						if _, err := adminClient.UpdateKey(ctx, name, kp.KID.Version(), azkeys.UpdateKeyParameters{
							KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(on)}}, nil); err != nil {
							t.Fatal(err)
						}
					}
				}
			},
		}
	})
}
