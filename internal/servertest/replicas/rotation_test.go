package replicas_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cofferhq/coffer/internal/blobstore/s3"
	"github.com/cofferhq/coffer/internal/blobstore/s3/s3test"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// TestKeyRotationAcrossReplicas: the registry's key-encryption key rotated through replica
// A's management API, as an operator does it, is honoured by replica B with no restart:
//
//  1. the platform key gets a new version in its vault and A runs the automatic rotation
//     check (POST /registry/encryption/rotation), which re-wraps the root key under it;
//  2. a customer-managed key is enabled through A, and B's rotation check run right after
//     (B has not re-read the settings since) keeps it: it does not put the platform key
//     back, although that key has a newer version than the one B last saw;
//  3. the customer-managed key gets a new version and A pins it (rotate-key with the
//     versioned id); B's rotation check right after keeps the pin;
//  4. a new root-key generation is added through A (POST /registry/encryption/root-key,
//     coffer registry encryption new-root-key): what A pushes afterwards is sealed under it (the seal header
//     in the bucket says so), and B, which has not re-read the settings, reads it at once.
//
// After each step both replicas report the new key version (GET /registry/encryption,
// which re-checks access with the vault), the version before it is disabled in the vault
// (docs/encryption.md: "the old key version may be disabled or deleted without affecting
// the registry"), and everything pushed through A before and after pulls intact from B:
// B's access check succeeds only if it unwraps the root key A re-wrapped under the new
// version, read from the database.
func TestKeyRotationAcrossReplicas(t *testing.T) {
	c := startCluster(t, nil) // the default access-check interval (60 s): B re-reads the settings only when told to
	a, b := c.replicas[0], c.replicas[1]
	auth := &authn.Basic{Username: "admin", Password: c.password}
	onA := []remote.Option{remote.WithAuth(auth), remote.WithTransport(a.Client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
	onB := []remote.Option{remote.WithAuth(auth), remote.WithTransport(b.Client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
	mA, mB := adminEnv(t, a, c.password), adminEnv(t, b, c.password)

	pushed := map[string]v1.Image{}
	push := func(tag string) {
		t.Helper()
		img := randomImage(t, 200<<10, 4096)
		ref, _ := name.ParseReference(a.Addr + "/team/rotated:" + tag)
		if err := remote.Write(ref, img, onA...); err != nil {
			t.Fatalf("push %s through replica A: %v", tag, err)
		}
		pushed[tag] = img
	}
	pullAllFromB := func() {
		t.Helper()
		for tag, img := range pushed {
			ref, _ := name.ParseReference(b.Addr + "/team/rotated:" + tag)
			pullVerified(t, ref, img, onB...)
		}
	}
	status := func(e *vaulttest.Env, what string) wire.EncryptionStatus {
		t.Helper()
		var st wire.EncryptionStatus
		e.MustDo(t, "GET", "/coffer/v1/registry/encryption", nil, &st)
		if !st.KeyAccessible {
			t.Fatalf("%s: replica %s cannot use the key: %s", what, e.Inst.Addr, st.KeyAccessError)
		}
		return st
	}
	// wantKey: both replicas report keyID at version (a kid's last segment), and whether
	// automatic rotation is on.
	wantKey := func(what, keyID, version string, auto bool) {
		t.Helper()
		for _, e := range []*vaulttest.Env{mA, mB} {
			kv := status(e, what).KeyVaultProperties
			if kv.KeyIdentifier != keyID || !strings.HasSuffix(kv.VersionedKeyIdentifier, "/"+version) || kv.KeyRotationEnabled != auto {
				t.Fatalf("%s: replica %s reports key %s (version %s, automatic rotation %v), want %s version %s (automatic %v)",
					what, e.Inst.Addr, kv.KeyIdentifier, kv.VersionedKeyIdentifier, kv.KeyRotationEnabled, keyID, version, auto)
			}
		}
	}
	newVersion := func(vaultName, key string) string {
		t.Helper()
		var k wire.Key
		mA.MustDo(t, "POST", "/coffer/v1/vaults/"+vaultName+"/keys/"+key+"/rotate", nil, &k)
		if k.Version == "" {
			t.Fatalf("rotating %s/%s gave no version", vaultName, key)
		}
		return k.Version
	}
	// seenByB waits until replica B's vault serves version of key (B trusts key metadata
	// it read for up to 2 s, vault.Options.CacheTTL), so that B's rotation check below
	// meets the newer version.
	seenByB := func(vaultName, key, version string) {
		t.Helper()
		vaulttest.Eventually(t, 10*time.Second, "replica B sees version "+version+" of "+key, func() error {
			var k wire.Key
			if err := mB.Do("GET", "/coffer/v1/vaults/"+vaultName+"/keys/"+key, nil, &k); err != nil {
				return err
			}
			if k.Version != version {
				return fmt.Errorf("replica B serves version %s", k.Version)
			}
			return nil
		})
	}
	disable := func(vaultName, key, version string) {
		t.Helper()
		mA.MustDo(t, "PATCH", "/coffer/v1/vaults/"+vaultName+"/keys/"+key+"?version="+version, map[string]any{"enabled": false}, nil)
	}
	var who struct {
		ID string `json:"id"`
	}
	mA.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	domain := a.Config.Vault.Domain

	// 1. The platform key's new version, taken by A's automatic rotation check.
	platformKey := status(mB, "at start").KeyVaultProperties
	p1 := versionOf(platformKey.VersionedKeyIdentifier)
	push("platform-v1")
	mA.SetPolicy(t, "coffer-platform", who.ID, "get", "list", "rotate", "update")
	p2 := newVersion("coffer-platform", "registry-encryption")
	var st wire.EncryptionStatus
	mA.MustDo(t, "POST", "/coffer/v1/registry/encryption/rotation", nil, &st)
	if versionOf(st.KeyVaultProperties.VersionedKeyIdentifier) != p2 {
		t.Fatalf("A's rotation check left the root key under %s, want version %s", st.KeyVaultProperties.VersionedKeyIdentifier, p2)
	}
	push("platform-v2")
	wantKey("after the platform key's rotation on A", platformKey.KeyIdentifier, p2, true)
	disable("coffer-platform", "registry-encryption", p1)
	wantKey("with the platform key's old version disabled", platformKey.KeyIdentifier, p2, true)
	pullAllFromB()

	// 2. A customer-managed key enabled through A; the platform key moves on meanwhile.
	mA.CreateVault(t, "team", nil)
	mA.SetPolicy(t, "team", who.ID, "create", "get", "list", "rotate", "update")
	mA.SetPolicy(t, "team", mA.SystemIdentity(t), "get", "wrapKey", "unwrapKey")
	// A replica sees access policies set through another within the access part's cache
	// TTL (access.Options.CacheTTL, 5 s); until then B's key check would be refused.
	time.Sleep(accessCacheTTL)
	var k wire.Key
	mA.MustDo(t, "POST", "/coffer/v1/vaults/team/keys/cmk/create", map[string]any{"kty": "RSA"}, &k)
	c1 := k.Version
	// No port: the vault of this cluster, whichever replica serves it.
	cmk := "https://team." + domain + "/keys/cmk"
	mA.MustDo(t, "POST", "/coffer/v1/registry/encryption/enable", map[string]any{"keyEncryptionKey": cmk, "identity": "[system]"}, &st)
	if st.KeySource != "customer" || versionOf(st.KeyVaultProperties.VersionedKeyIdentifier) != c1 {
		t.Fatalf("enable on A: %+v", st)
	}
	p3 := newVersion("coffer-platform", "registry-encryption") // as its P90D rotation policy would
	seenByB("coffer-platform", "registry-encryption", p3)
	mB.MustDo(t, "POST", "/coffer/v1/registry/encryption/rotation", nil, nil)
	push("cmk-v1")
	wantKey("after the customer-managed key was enabled on A and B ran its rotation check", cmk, c1, true)
	pullAllFromB()

	// 3. The customer-managed key's new version, pinned through A.
	c2 := newVersion("team", "cmk")
	mA.MustDo(t, "POST", "/coffer/v1/registry/encryption/rotate-key", map[string]any{"keyEncryptionKey": cmk + "/" + c2}, nil)
	seenByB("team", "cmk", c2)
	mB.MustDo(t, "POST", "/coffer/v1/registry/encryption/rotation", nil, nil)
	push("cmk-v2")
	wantKey("after A pinned the new version and B ran its rotation check", cmk+"/"+c2, c2, false)
	disable("team", "cmk", c1)
	wantKey("with the customer-managed key's old version disabled", cmk+"/"+c2, c2, false)
	pullAllFromB()

	// 4. A new root-key generation, made through A's management API (coffer registry
	// encryption new-root-key). A seals under it at once; B, which has not re-read the
	// settings, reads A's new objects at once (the keyring reloads on an unknown generation).
	before := pushed["cmk-v2"]
	if g := sealGeneration(t, a, before); g != 1 {
		t.Fatalf("content pushed before the new generation is sealed under generation %d, want 1", g)
	}
	var made wire.EncryptionStatus
	mA.MustDo(t, "POST", "/coffer/v1/registry/encryption/root-key", nil, &made)
	if made.RootKeyGeneration != 2 {
		t.Fatalf("new root-key generation %d, want 2", made.RootKeyGeneration)
	}
	status(mA, "after the new generation")
	push("generation-2")
	if g := sealGeneration(t, a, pushed["generation-2"]); g != 2 {
		t.Fatalf("content pushed through A after the new generation is sealed under generation %d, want 2", g)
	}
	pullAllFromB()
	for tag, img := range pushed { // and A, which made every change, reads all of it too
		ref, _ := name.ParseReference(a.Addr + "/team/rotated:" + tag)
		pullVerified(t, ref, img, onA...)
	}
}

// accessCacheTTL is how long a replica may use access policies it read (the access
// part's default CacheTTL, 5 s), with a margin.
const accessCacheTTL = 6 * time.Second

// versionOf is a key id's version: its last path segment.
func versionOf(kid string) string { return kid[strings.LastIndex(kid, "/")+1:] }

// sealGeneration reads, from the bucket, the seal header of img's first layer and returns
// the root-key generation it names (docs/seal-format.md: magic CFSEAL, version, flags,
// then the generation, big-endian).
func sealGeneration(t *testing.T, inst *servertest.Instance, img v1.Image) uint32 {
	t.Helper()
	bs := inst.Config.BlobStore
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(bs.URL, "s3://"), "/")
	drv, err := s3.New(t.Context(), s3.Options{Bucket: bucket, Prefix: prefix, Endpoint: bs.S3Endpoint, Region: bs.S3Region,
		PathStyle: bs.S3PathStyle, AccessKeyID: s3test.AccessKey, SecretAccessKey: s3test.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) == 0 {
		t.Fatalf("layers: %v", err)
	}
	d, _ := layers[0].Digest()
	r, err := drv.Reader(t.Context(), "blobs/"+d.Algorithm+"/"+d.Hex[:2]+"/"+d.Hex, 0)
	if err != nil {
		t.Fatalf("layer %s in the bucket: %v", d, err)
	}
	defer r.Close()
	hdr := make([]byte, 12)
	if _, err := io.ReadFull(r, hdr); err != nil {
		t.Fatal(err)
	}
	if string(hdr[:6]) != "CFSEAL" {
		t.Fatalf("layer %s in the bucket does not start with a seal header: %q", d, hdr[:6])
	}
	return binary.BigEndian.Uint32(hdr[8:12])
}
