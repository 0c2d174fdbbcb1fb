package trustapi_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	canonicaljson "github.com/docker/go/canonical/json"
	"github.com/theupdateframework/notary"
	"github.com/theupdateframework/notary/client"
	"github.com/theupdateframework/notary/tuf/data"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

const trustMarker = "COFFER-TRUST-PLAINTEXT-MARKER-7d2e"

// grepDataDir returns the files under dir holding s, and how many files it read.
func grepDataDir(t *testing.T, dir, s string) (found []string, files int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(s)) {
			found = append(found, p)
		}
		return nil
	})
	must(t, err)
	return found, files
}

// TestCustomerManagedKey switches the registry to a customer-managed key in a second vault
// (as internal/encryption's feature tests do), publishes a signed tag whose custom data
// holds a marker, and finds the marker nowhere under the data directory. Revoking the
// registry identity's access to the key makes the trust API refuse reads and writes
// (403 DENIED, fail closed) within the key access check interval; restoring it brings the
// same trust data back, with no restart.
func TestCustomerManagedKey(t *testing.T) {
	const interval = 2 * time.Second
	ve := vaulttest.Start(t, func(c *config.Server) { c.Encryption.KeyAccessCheckInterval = interval })
	e := &env{inst: ve.Inst, host: ve.Inst.Addr, mgmt: ve.Token}
	e.setTrust(t, "enabled")
	e.assign(t, "AcrImageSigner", "admin", "/registry")

	var who struct {
		ID string `json:"id"`
	}
	ve.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	ve.CreateVault(t, "team", nil)
	ve.SetPolicy(t, "team", who.ID, "create", "get")
	ve.MustDo(t, "POST", "/coffer/v1/vaults/team/keys/cmk/create", map[string]any{"kty": "RSA"}, nil)
	var mi struct {
		PrincipalID string `json:"principalId"`
		ClientID    string `json:"clientId"`
	}
	ve.MustDo(t, "POST", "/coffer/v1/managedIdentities", map[string]any{"name": "registry-cmk"}, &mi)
	ve.SetPolicy(t, "team", mi.PrincipalID, "get", "wrapKey", "unwrapKey")
	ve.MustDo(t, "POST", "/coffer/v1/registry/encryption/enable", map[string]any{
		"keyEncryptionKey": ve.HostURL("team") + "/keys/cmk", "identity": mi.ClientID}, nil)

	const repo = "sealed/app"
	signer := dockerRepo(t, e, repo, "admin", e.inst.AdminPassword, "pull", "push")
	rk, err := signer.GetCryptoService().Create(data.CanonicalRootRole, "", data.ECDSAKey)
	must(t, err)
	must(t, signer.Initialize([]string{rk.ID()}, data.CanonicalSnapshotRole))
	custom := canonicaljson.RawMessage(fmt.Sprintf(`{"note":%q}`, trustMarker))
	h := bytes.Repeat([]byte{0xab}, 32)
	must(t, signer.AddTarget(&client.Target{Name: "v1", Hashes: data.Hashes{notary.SHA256: h}, Length: 1234, Custom: &custom}, data.CanonicalTargetsRole))
	must(t, signer.Publish())

	readTarget := func() error {
		r := dockerRepo(t, e, repo, "admin", e.inst.AdminPassword, "pull")
		tw, err := r.GetTargetByName("v1", data.CanonicalTargetsRole)
		if err != nil {
			return err
		}
		if hex.EncodeToString(tw.Hashes[notary.SHA256]) != hex.EncodeToString(h) || tw.Custom == nil || !strings.Contains(string(*tw.Custom), trustMarker) {
			return fmt.Errorf("target read back as %+v", tw)
		}
		return nil
	}
	must(t, readTarget())

	found, files := grepDataDir(t, e.inst.DataDir, trustMarker)
	if len(found) > 0 {
		t.Fatalf("the plaintext marker of a target's custom data is in %v", found)
	}
	trustFiles := 0
	filepath.WalkDir(filepath.Join(e.inst.DataDir, "blobs", "data", "trust"), func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			trustFiles++
		}
		return nil
	})
	if trustFiles < 4 || files < trustFiles {
		t.Fatalf("%d trust objects under the data directory (of %d files): the test looked at too little", trustFiles, files)
	}

	hc := &http.Client{Transport: dockerTransport(t, e, e.gun(repo), "admin", e.inst.AdminPassword, "pull", "push")}
	get := func(role string) apiError {
		resp, err := hc.Get(e.inst.URL + "/v2/" + e.gun(repo) + "/_trust/tuf/" + role + ".json")
		must(t, err)
		defer resp.Body.Close()
		return readAPIError(resp)
	}
	ve.MustDo(t, "DELETE", "/coffer/v1/vaults/team/access-policies/"+mi.PrincipalID, nil, nil)
	took := vaulttest.Eventually(t, interval+3*time.Second, "trust reads refused after revocation", func() error {
		for _, role := range []string{"timestamp", "snapshot", "targets", "root"} {
			if got := get(role); got.Status != http.StatusForbidden || got.Code != "DENIED" || !strings.Contains(got.Message, "encryption key") {
				return fmt.Errorf("GET %s.json after revocation: %+v", role, got)
			}
		}
		return nil
	})
	t.Logf("trust reads refused %s after the access policy was removed (interval %s)", took.Round(10*time.Millisecond), interval)
	// Writes are refused too: a new target cannot be published (nor a key created).
	must(t, signer.AddTarget(&client.Target{Name: "v2", Hashes: data.Hashes{notary.SHA256: h}, Length: 1}, data.CanonicalTargetsRole))
	if err := signer.Publish(); err == nil {
		t.Fatal("published trust data with the registry's key revoked")
	}
	if err := readTarget(); err == nil {
		t.Fatal("a fresh client read trust data with the key revoked")
	}

	ve.SetPolicy(t, "team", mi.PrincipalID, "get", "wrapKey", "unwrapKey")
	vaulttest.Eventually(t, interval+3*time.Second, "trust reads after access restored", readTarget)
	must(t, signer.Publish()) // the pending v2 goes through now
	r := dockerRepo(t, e, repo, "admin", e.inst.AdminPassword, "pull")
	if _, err := r.GetTargetByName("v2", data.CanonicalTargetsRole); err != nil {
		t.Fatalf("v2 after recovery: %v", err)
	}
}
