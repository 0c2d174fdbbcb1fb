package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// TestGrantOnOneKeyDoesNotCoverAnother: key names are case-insensitive, as in Azure Key
// Vault and as the scopes of role assignments are. A Crypto User at
// /vaults/team1/keys/lowkey reaches lowkey by any spelling and no other key; LowKey beside
// lowkey cannot be created (409 Conflict in the Key Vault error shape), so no key exists
// that the grant would cover by accident.
func TestGrantOnOneKeyDoesNotCoverAnother(t *testing.T) {
	e := vaulttest.Start(t, nil)
	ctx := context.Background()
	e.CreateVault(t, "team1", map[string]any{"enableRbacAuthorization": true})
	var lowkey struct {
		Key struct {
			Kid string `json:"kid"`
		} `json:"key"`
	}
	e.MustDo(t, "POST", "/coffer/v1/vaults/team1/keys/lowkey/create", map[string]any{"kty": "RSA"}, &lowkey)
	e.MustDo(t, "POST", "/coffer/v1/vaults/team1/keys/otherkey/create", map[string]any{"kty": "RSA"}, nil)
	user := e.ServicePrincipal(t, "crypto-user")
	officer := e.ServicePrincipal(t, "crypto-officer")
	e.MustDo(t, "POST", "/coffer/v1/role-assignments", map[string]any{"role": "Key Vault Crypto User", "assignee": user.ObjectID, "scope": "/vaults/team1/keys/lowkey"}, nil)
	e.MustDo(t, "POST", "/coffer/v1/role-assignments", map[string]any{"role": "Key Vault Crypto Officer", "assignee": officer.ObjectID, "scope": "/vaults/team1"}, nil)

	oc := client(t, e, e.HostURL("team1"), officer, false)
	for _, name := range []string{"LowKey", "LOWKEY"} {
		_, err := oc.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil)
		wantStatus(t, err, http.StatusConflict, "Conflict")
		if re := respErr(t, err); !strings.Contains(re.Error(), "case-insensitive") {
			t.Errorf("the conflict does not say why: %v", re)
		}
	}
	uc := client(t, e, e.HostURL("TEAM1"), user, false)
	alg := to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256)
	for _, name := range []string{"lowkey", "LowKey", "LOWKEY"} {
		w, err := uc.WrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: alg, Value: []byte("0123456789abcdef")}, nil)
		if err != nil {
			t.Fatalf("wrap with %s: %v", name, err)
		}
		if kid := string(*w.KID); !strings.HasPrefix(kid, strings.Join(strings.Split(lowkey.Key.Kid, "/")[:5], "/")) || !strings.Contains(kid, "/keys/lowkey/") {
			t.Errorf("wrap with %s answered kid %s, want lowkey's (%s)", name, kid, lowkey.Key.Kid)
		}
	}
	for _, name := range []string{"otherkey", "OtherKey"} {
		_, err := uc.WrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: alg, Value: []byte("0123456789abcdef")}, nil)
		wantStatus(t, err, http.StatusForbidden, "Forbidden")
	}
	// The management API: the vault and the key in another case are the same.
	var got struct {
		Key struct {
			Kid string `json:"kid"`
		} `json:"key"`
	}
	e.MustDo(t, "GET", "/coffer/v1/vaults/TEAM1/keys/LowKey", nil, &got)
	if got.Key.Kid != lowkey.Key.Kid {
		t.Fatalf("GET TEAM1/LowKey answered %s, want %s", got.Key.Kid, lowkey.Key.Kid)
	}
}

// TestKidNamesTheVaultOnItsPort: on a vault's own port the key ids name the vault's URL,
// whatever Host header the client sent.
func TestKidNamesTheVaultOnItsPort(t *testing.T) {
	e := vaulttest.Start(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	v := e.CreateVault(t, "ported", map[string]any{"port": port})
	app := e.ServicePrincipal(t, "app")
	e.SetPolicy(t, "ported", app.ObjectID, "create", "get")
	if _, err := client(t, e, v.VaultURI, app, true).CreateKey(context.Background(), "k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil); err != nil {
		t.Fatal(err)
	}
	tok, err := e.Credential(t, app).GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://" + e.Inst.Config.Vault.Domain + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"evil.example", "evil.example:" + strconv.Itoa(port), "other." + e.Inst.Config.Vault.Domain} {
		req, _ := http.NewRequest("GET", v.VaultURI+"/keys/k?api-version=7.4", nil)
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		resp, err := e.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var k struct {
			Key struct {
				Kid string `json:"kid"`
			} `json:"key"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &k) != nil {
			t.Fatalf("Host %s: %d %s", host, resp.StatusCode, body)
		}
		if !strings.HasPrefix(k.Key.Kid, v.VaultURI+"/keys/k/") {
			t.Errorf("Host %s: kid %s, want it under %s", host, k.Key.Kid, v.VaultURI)
		}
	}
}
