package cli

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/cofferhq/coffer/internal/kek/kektest"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// TestMgmtKEKSuite runs the KEK drivers' shared suite against the driver `coffer image`
// uses for a vault of the server it is logged in to (the management API's key
// operations), as a service principal holding an access policy: the same errors as the
// REST and in-process drivers for a revoked permission, a disabled or missing key and the
// vault's network rules.
func TestMgmtKEKSuite(t *testing.T) {
	e := vaulttest.Start(t, nil)
	e.CreateVault(t, "kekvault", nil)
	user := e.ServicePrincipal(t, "image-user")
	grant := func(t *testing.T) { e.SetPolicy(t, "kekvault", user.ObjectID, "get", "wrapKey", "unwrapKey") }
	grant(t)
	var who wire.Whoami
	e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	e.SetPolicy(t, "kekvault", who.ID, "get", "list", "create", "update", "rotate")

	session := &mgmtSession{connect: func(ctx context.Context) (*apiClient, error) {
		tok, err := requestToken(ctx, e.HTTP, e.Inst.URL, url.Values{"grant_type": {"client_credentials"}, "client_id": {user.ClientID},
			"client_secret": {user.Secret}, "service": {wire.AudienceManagement}})
		if err != nil {
			return nil, err
		}
		return &apiClient{base: e.Inst.URL, http: e.HTTP, token: tok.AccessToken}, nil
	}}
	driver := &mgmtKEK{s: session, vault: "kekvault"}
	create := func(t *testing.T, name, kty string) string {
		t.Helper()
		var k wire.Key
		e.MustDo(t, "POST", "/coffer/v1/vaults/kekvault/keys/"+name+"/create", wire.CreateKeyRequest{Kty: kty, Curve: map[string]string{"EC": "P-256"}[kty]}, &k)
		return k.ID
	}
	create(t, "ec-key", "EC")
	vaultURL := e.HostURL("kekvault")
	var n atomic.Int32
	kektest.Run(t, func(t *testing.T) kektest.Fixture {
		name := fmt.Sprintf("kek-%d", n.Add(1))
		create(t, name, "RSA")
		return kektest.Fixture{
			KEK:        driver,
			RSAKey:     vaultURL + "/keys/" + name,
			ECKey:      vaultURL + "/keys/ec-key",
			MissingKey: vaultURL + "/keys/no-such-key",
			NewVersion: func(t *testing.T) string {
				var k wire.Key
				e.MustDo(t, "POST", "/coffer/v1/vaults/kekvault/keys/"+name+"/rotate", nil, &k)
				return k.ID
			},
			Revoke: func(t *testing.T) {
				e.MustDo(t, "DELETE", "/coffer/v1/vaults/kekvault/access-policies/"+user.ObjectID, nil, nil)
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
				var vs wire.KeyList
				e.MustDo(t, "GET", "/coffer/v1/vaults/kekvault/keys/"+name+"/versions", nil, &vs)
				for _, v := range vs.Value {
					e.MustDo(t, "PATCH", "/coffer/v1/vaults/kekvault/keys/"+name+"?version="+v.Version, wire.UpdateKeyRequest{Enabled: &on}, nil)
				}
			},
		}
	})
}
