//go:build cgo

package hsm_test

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/vault/hsm/hsmtest"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

const marker = "COFFER-HSM-E2E-MARKER-7d1f"

func image(t *testing.T, tag string) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, static.NewLayer(bytes.Repeat([]byte(marker+" "+tag+"\n"), 3000), types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

type registry struct {
	t    *testing.T
	host string
	opts []remote.Option
}

func (r registry) push(repo string, img v1.Image) error {
	ref, err := name.ParseReference(r.host + "/" + repo)
	if err != nil {
		r.t.Fatal(err)
	}
	return remote.Write(ref, img, r.opts...)
}

func (r registry) pull(repo string) error {
	ref, err := name.ParseReference(r.host + "/" + repo)
	if err != nil {
		r.t.Fatal(err)
	}
	img, err := remote.Image(ref, r.opts...)
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if !bytes.Contains(b, []byte(marker)) {
			return fmt.Errorf("layer lost its content")
		}
	}
	return nil
}

func within(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	var err error
	for start := time.Now(); time.Since(start) < d; time.Sleep(100 * time.Millisecond) {
		if err = f(); err == nil {
			return
		}
	}
	t.Fatalf("%s: not within %s: %v", what, d, err)
}

// TestRegistryUnderRSAHSMKey encrypts the registry under a customer-managed RSA-HSM key
// in an HSM vault on SoftHSM, which cannot do RSA-OAEP-256: the key hierarchy wraps with
// RSA-OAEP in the token instead, and push, pull, rotation, revocation and restoration work
// as with a software key.
func TestRegistryUnderRSAHSMKey(t *testing.T) {
	const interval = 2 * time.Second
	tok := hsmtest.New(t, "coffer-cmk")
	e := vaulttest.Start(t, withHSM(tok, func(c *config.Server) {
		c.Encryption.KeyAccessCheckInterval = interval
		c.Encryption.KeyRotationCheckInterval = interval
	}))
	e.CreateVault(t, "premium", map[string]any{"hsm": true})
	var who struct {
		ID string `json:"id"`
	}
	e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	e.SetPolicy(t, "premium", who.ID, "create", "get", "rotate", "list")
	e.MustDo(t, "POST", "/coffer/v1/vaults/premium/keys/cmk/create", map[string]any{"kty": "RSA-HSM", "size": 2048}, nil)
	var mi struct {
		PrincipalID string `json:"principalId"`
		ClientID    string `json:"clientId"`
	}
	e.MustDo(t, "POST", "/coffer/v1/managedIdentities", map[string]any{"name": "registry-cmk"}, &mi)
	e.SetPolicy(t, "premium", mi.PrincipalID, "get", "wrapKey", "unwrapKey")

	reg := registry{t: t, host: e.Inst.Addr, opts: []remote.Option{
		remote.WithAuth(&authn.Basic{Username: "admin", Password: e.Inst.AdminPassword}),
		remote.WithTransport(e.Inst.Client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
	}}
	if err := reg.push("team/app:v1", image(t, "v1")); err != nil {
		t.Fatal(err)
	}
	keyURL := e.HostURL("premium") + "/keys/cmk"
	type status struct {
		KeySource          string `json:"keySource"`
		KeyAccessible      bool   `json:"keyAccessible"`
		KeyAccessError     string `json:"keyAccessError"`
		KeyVaultProperties struct {
			VersionedKeyIdentifier string `json:"versionedKeyIdentifier"`
		} `json:"keyVaultProperties"`
	}
	var st status
	e.MustDo(t, "POST", "/coffer/v1/registry/encryption/enable", map[string]any{"keyEncryptionKey": keyURL, "identity": mi.ClientID}, &st)
	if !st.KeyAccessible || !strings.HasPrefix(st.KeyVaultProperties.VersionedKeyIdentifier, keyURL+"/") {
		t.Fatalf("enable: %+v", st)
	}
	first := st.KeyVaultProperties.VersionedKeyIdentifier
	if err := reg.pull("team/app:v1"); err != nil {
		t.Fatalf("pull v1 under the HSM key: %v", err)
	}
	if err := reg.push("team/app:v2", image(t, "v2")); err != nil {
		t.Fatalf("push under the HSM key: %v", err)
	}

	// The key hierarchy chose the token's algorithm: the vault's audit shows the
	// registry identity's wraps with RSA-OAEP, and none succeeded with RSA-OAEP-256.
	var audit struct {
		Value []map[string]any `json:"value"`
	}
	e.MustDo(t, "GET", "/coffer/v1/audit?vault=premium", nil, &audit)
	oaep := 0
	for _, r := range audit.Value {
		op, alg, res := fmt.Sprint(r["operation"]), fmt.Sprint(r["algorithm"]), fmt.Sprint(r["result"])
		if op == "KeyWrapKey" && alg == "RSA-OAEP-256" && res == "success" {
			t.Fatalf("a wrap with RSA-OAEP-256 succeeded on SoftHSM: %v", r)
		}
		if strings.HasPrefix(op, "Key") && strings.Contains(op, "rapKey") && alg == "RSA-OAEP" && res == "success" {
			oaep++
		}
	}
	if oaep < 2 {
		t.Fatalf("%d successful RSA-OAEP wraps/unwraps in the audit trail", oaep)
	}

	// Rotate the vault key: the registry re-wraps under the new version (in the token).
	e.MustDo(t, "POST", "/coffer/v1/vaults/premium/keys/cmk/rotate", nil, nil)
	within(t, interval+5*time.Second, "re-wrap under the rotated key", func() error {
		var s status
		e.MustDo(t, "GET", "/coffer/v1/registry/encryption", nil, &s)
		if s.KeyVaultProperties.VersionedKeyIdentifier == first || !s.KeyAccessible {
			return fmt.Errorf("still %s (%+v)", s.KeyVaultProperties.VersionedKeyIdentifier, s)
		}
		return nil
	})
	if err := reg.pull("team/app:v1"); err != nil {
		t.Fatalf("pull after rotation: %v", err)
	}

	// Revoke the identity's access: reads stop within the interval; restore it: they come back.
	e.MustDo(t, "DELETE", "/coffer/v1/vaults/premium/access-policies/"+mi.PrincipalID, nil, nil)
	within(t, interval+5*time.Second, "pull refused after revocation", func() error {
		if err := reg.pull("team/app:v1"); err == nil {
			return fmt.Errorf("pull still works")
		}
		return nil
	})
	if err := reg.push("team/app:v3", image(t, "v3")); err == nil {
		t.Fatal("push works with the key revoked")
	}
	e.SetPolicy(t, "premium", mi.PrincipalID, "get", "wrapKey", "unwrapKey")
	within(t, interval+5*time.Second, "pull after access restored", func() error { return reg.pull("team/app:v1") })
	if err := reg.pull("team/app:v2"); err != nil {
		t.Fatalf("pull v2 after restore: %v", err)
	}
	if err := reg.push("team/app:v3", image(t, "v3")); err != nil {
		t.Fatalf("push after restore: %v", err)
	}
}
