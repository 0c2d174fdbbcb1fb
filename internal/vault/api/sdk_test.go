package api_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"math/big"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

var kidRE = regexp.MustCompile(`^https://[^/]+/keys/([A-Za-z0-9-]+)/([0-9a-f]{32})$`)

func client(t testing.TB, e *vaulttest.Env, url string, p vaulttest.Principal, disableResourceCheck bool) *azkeys.Client {
	t.Helper()
	c, err := azkeys.NewClient(url, e.Credential(t, p), &azkeys.ClientOptions{
		ClientOptions:                        policy.ClientOptions{Transport: e.HTTP, Retry: policy.RetryOptions{MaxRetries: -1}},
		DisableChallengeResourceVerification: disableResourceCheck,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// respErr returns the SDK's response error (status and Key Vault error code).
func respErr(t testing.TB, err error) *azcore.ResponseError {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("want a ResponseError, got %v", err)
	}
	return re
}

func wantStatus(t testing.TB, err error, status int, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %d %s, got success", status, code)
	}
	re := respErr(t, err)
	if re.StatusCode != status || (code != "" && re.ErrorCode != code) {
		t.Fatalf("want %d %s, got %d %s: %v", status, code, re.StatusCode, re.ErrorCode, err)
	}
}

func kidParts(t testing.TB, kid *azkeys.ID) (string, string) {
	t.Helper()
	if kid == nil {
		t.Fatal("no kid")
	}
	m := kidRE.FindStringSubmatch(string(*kid))
	if m == nil {
		t.Fatalf("kid %q is not https://HOST/keys/NAME/VERSION with a 32-hex version", *kid)
	}
	if kid.Name() != m[1] || kid.Version() != m[2] {
		t.Fatalf("SDK parses kid %q as %q/%q", *kid, kid.Name(), kid.Version())
	}
	return m[1], m[2]
}

// TestAzkeysSDK drives the real azkeys SDK with a ClientSecretCredential from Coffer's token
// service through every key operation, by host name.
func TestAzkeysSDK(t *testing.T) {
	e := vaulttest.Start(t, nil)
	ctx := context.Background()
	e.CreateVault(t, "team1", map[string]any{"enablePurgeProtection": true, "softDeleteRetentionInDays": 7})
	e.CreateVault(t, "team2", nil)
	app := e.ServicePrincipal(t, "app")
	all := []string{"get", "list", "create", "update", "import", "delete", "recover", "backup", "restore", "purge",
		"wrapKey", "unwrapKey", "encrypt", "decrypt", "sign", "verify", "rotate", "getrotationpolicy", "setrotationpolicy"}
	e.SetPolicy(t, "team1", app.ObjectID, all...)
	e.SetPolicy(t, "team2", app.ObjectID, all...)
	reader := e.ServicePrincipal(t, "wrap-only")
	e.SetPolicy(t, "team1", reader.ObjectID, "get", "wrapKey")

	c := client(t, e, e.HostURL("team1"), app, false)

	// Create RSA and read it back versioned and versionless.
	created, err := c.CreateKey(ctx, "kek", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr[int32](2048),
		Tags: map[string]*string{"team": to.Ptr("one")}}, nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	name, v1 := kidParts(t, created.Key.KID)
	if name != "kek" || len(created.Key.N) != 256 || created.Attributes.Created == nil || *created.Tags["team"] != "one" {
		t.Fatalf("created key looks wrong: %+v", created.Key)
	}
	got, err := c.GetKey(ctx, "kek", v1, nil)
	if err != nil || got.Key.KID.Version() != v1 {
		t.Fatalf("get versioned: %v", err)
	}
	got, err = c.GetKey(ctx, "kek", "", nil)
	if err != nil || got.Key.KID.Version() != v1 {
		t.Fatalf("get versionless: %v %v", err, got.Key.KID)
	}

	// Versionless wrap answers the resolved kid.
	dek := make([]byte, 32)
	rand.Read(dek)
	w1, err := c.WrapKey(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: dek}, nil)
	if err != nil {
		t.Fatalf("wrap: %v", err)
	}
	if _, ver := kidParts(t, w1.KID); ver != v1 {
		t.Fatalf("versionless wrap answered %s, want version %s", *w1.KID, v1)
	}

	// Rotate, then unwrap the old wrapped key with its versioned kid.
	rot, err := c.RotateKey(ctx, "kek", nil)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	_, v2 := kidParts(t, rot.Key.KID)
	if v2 == v1 {
		t.Fatal("rotation kept the version")
	}
	w2, err := c.WrapKey(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: dek}, nil)
	if err != nil || w2.KID.Version() != v2 {
		t.Fatalf("wrap after rotation: %v %v", err, w2.KID)
	}
	un, err := c.UnwrapKey(ctx, w1.KID.Name(), w1.KID.Version(), azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: w1.Result}, nil)
	if err != nil || string(un.Result) != string(dek) || un.KID.Version() != v1 {
		t.Fatalf("unwrap with the old version: %v", err)
	}
	// The old wrapped key does not unwrap with the new version.
	_, err = c.UnwrapKey(ctx, "kek", v2, azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: w1.Result}, nil)
	wantStatus(t, err, 400, "BadParameter")

	// Versions list.
	var versions []string
	for pg := c.NewListKeyPropertiesVersionsPager("kek", nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatalf("list versions: %v", err)
		}
		for _, k := range page.Value {
			versions = append(versions, k.KID.Version())
		}
	}
	if len(versions) != 2 {
		t.Fatalf("versions: %v", versions)
	}

	// Update: tags, disable, then crypto refuses.
	upd, err := c.UpdateKey(ctx, "kek", v1, azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(false)},
		Tags: map[string]*string{"state": to.Ptr("retired")}}, nil)
	if err != nil || *upd.Attributes.Enabled || *upd.Tags["state"] != "retired" {
		t.Fatalf("update: %v", err)
	}
	_, err = c.UnwrapKey(ctx, "kek", v1, azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: w1.Result}, nil)
	wantStatus(t, err, 403, "Forbidden")
	if _, err := c.UpdateKey(ctx, "kek", v1, azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(true)}}, nil); err != nil {
		t.Fatal(err)
	}
	// Expired and not-yet-valid versions refuse crypto.
	past := time.Now().Add(-time.Hour)
	future := time.Now().Add(time.Hour)
	if _, err := c.UpdateKey(ctx, "kek", v1, azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Expires: &past}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.WrapKey(ctx, "kek", v1, azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP), Value: dek}, nil)
	wantStatus(t, err, 403, "Forbidden")
	nb, err := c.CreateKey(ctx, "later", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOct), KeySize: to.Ptr[int32](256),
		KeyAttributes: &azkeys.KeyAttributes{NotBefore: &future}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if nb.Attributes.NotBefore == nil || nb.Attributes.NotBefore.Unix() != future.Unix() {
		t.Fatalf("nbf not kept: %v", nb.Attributes.NotBefore)
	}
	_, err = c.WrapKey(ctx, "later", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256KW), Value: dek}, nil)
	wantStatus(t, err, 403, "Forbidden")

	// Encrypt/decrypt RSA.
	for _, alg := range []azkeys.EncryptionAlgorithm{azkeys.EncryptionAlgorithmRSAOAEP, azkeys.EncryptionAlgorithmRSAOAEP256, azkeys.EncryptionAlgorithmRSA15} {
		enc, err := c.Encrypt(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: []byte("hello " + string(alg))}, nil)
		if err != nil {
			t.Fatalf("encrypt %s: %v", alg, err)
		}
		dec, err := c.Decrypt(ctx, "kek", enc.KID.Version(), azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: enc.Result}, nil)
		if err != nil || string(dec.Result) != "hello "+string(alg) {
			t.Fatalf("decrypt %s: %v", alg, err)
		}
	}

	// Sign/verify: RSA (RS, PS) and EC on each curve.
	digest256 := sha256.Sum256([]byte("data"))
	digest384 := sha512.Sum384([]byte("data"))
	digest512 := sha512.Sum512([]byte("data"))
	digests := map[string][]byte{"256": digest256[:], "384": digest384[:], "512": digest512[:]}
	signWith := func(key string, alg azkeys.SignatureAlgorithm) {
		t.Helper()
		d := digests[string(alg)[2:]]
		s, err := c.Sign(ctx, key, "", azkeys.SignParameters{Algorithm: to.Ptr(alg), Value: d}, nil)
		if err != nil {
			t.Fatalf("sign %s %s: %v", key, alg, err)
		}
		ok, err := c.Verify(ctx, key, s.KID.Version(), azkeys.VerifyParameters{Algorithm: to.Ptr(alg), Digest: d, Signature: s.Result}, nil)
		if err != nil || !*ok.Value {
			t.Fatalf("verify %s %s: %v", key, alg, err)
		}
		bad := append([]byte{}, s.Result...)
		bad[0] ^= 1
		ok, err = c.Verify(ctx, key, s.KID.Version(), azkeys.VerifyParameters{Algorithm: to.Ptr(alg), Digest: d, Signature: bad}, nil)
		if err != nil || *ok.Value {
			t.Fatalf("verify of a bad %s signature: %v %v", alg, err, ok.Value)
		}
	}
	for _, alg := range []azkeys.SignatureAlgorithm{azkeys.SignatureAlgorithmRS256, azkeys.SignatureAlgorithmRS384, azkeys.SignatureAlgorithmRS512,
		azkeys.SignatureAlgorithmPS256, azkeys.SignatureAlgorithmPS384, azkeys.SignatureAlgorithmPS512} {
		signWith("kek", alg)
	}
	curves := map[azkeys.CurveName]azkeys.SignatureAlgorithm{azkeys.CurveNameP256: azkeys.SignatureAlgorithmES256,
		azkeys.CurveNameP384: azkeys.SignatureAlgorithmES384, azkeys.CurveNameP521: azkeys.SignatureAlgorithmES512}
	for crv, alg := range curves {
		kname := "ec-" + string(crv)[2:]
		k, err := c.CreateKey(ctx, kname, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(crv)}, nil)
		if err != nil {
			t.Fatalf("create EC %s: %v", crv, err)
		}
		if *k.Key.Kty != azkeys.KeyTypeECHSM || *k.Key.Crv != crv {
			t.Fatalf("EC key: %v %v", *k.Key.Kty, *k.Key.Crv)
		}
		signWith(kname, alg)
	}
	// An EC key refuses RSA-OAEP.
	_, err = c.WrapKey(ctx, "ec-256", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP), Value: dek}, nil)
	wantStatus(t, err, 400, "BadParameter")

	// RSA sizes and HSM kind; oct keys and AES key wrap.
	for _, size := range []int32{3072, 4096} {
		k, err := c.CreateKey(ctx, "rsa-"+strconv.Itoa(int(size)), azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr(size)}, nil)
		if err != nil || len(k.Key.N)*8 != int(size) || *k.Key.Kty != azkeys.KeyTypeRSAHSM {
			t.Fatalf("create RSA-HSM %d: %v", size, err)
		}
	}
	for _, kw := range []struct {
		size int32
		alg  azkeys.EncryptionAlgorithm
	}{{128, azkeys.EncryptionAlgorithmA128KW}, {192, azkeys.EncryptionAlgorithmA192KW}, {256, azkeys.EncryptionAlgorithmA256KW}} {
		kname := "oct-" + strconv.Itoa(int(kw.size))
		if _, err := c.CreateKey(ctx, kname, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM), KeySize: to.Ptr(kw.size)}, nil); err != nil {
			t.Fatalf("create oct %d: %v", kw.size, err)
		}
		wr, err := c.WrapKey(ctx, kname, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(kw.alg), Value: dek}, nil)
		if err != nil || len(wr.Result) != 40 {
			t.Fatalf("wrap %s: %v", kw.alg, err)
		}
		uw, err := c.UnwrapKey(ctx, kname, wr.KID.Version(), azkeys.KeyOperationParameters{Algorithm: to.Ptr(kw.alg), Value: wr.Result}, nil)
		if err != nil || string(uw.Result) != string(dek) {
			t.Fatalf("unwrap %s: %v", kw.alg, err)
		}
	}
	gcm, err := c.Encrypt(ctx, "oct-256", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256GCM), Value: []byte("secret"), AdditionalAuthenticatedData: []byte("aad")}, nil)
	if err != nil {
		t.Fatalf("encrypt A256GCM: %v", err)
	}
	plain, err := c.Decrypt(ctx, "oct-256", gcm.KID.Version(), azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256GCM),
		Value: gcm.Result, IV: gcm.IV, AuthenticationTag: gcm.AuthenticationTag, AdditionalAuthenticatedData: []byte("aad")}, nil)
	if err != nil || string(plain.Result) != "secret" {
		t.Fatalf("decrypt A256GCM: %v", err)
	}

	// Import a JWK; the vault decrypts what we encrypted with its public half.
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	priv.Precompute()
	imp, err := c.ImportKey(ctx, "imported", azkeys.ImportKeyParameters{Key: &azkeys.JSONWebKey{Kty: to.Ptr(azkeys.KeyTypeRSA),
		N: priv.N.Bytes(), E: big.NewInt(int64(priv.E)).Bytes(), D: priv.D.Bytes(), P: priv.Primes[0].Bytes(), Q: priv.Primes[1].Bytes(),
		DP: priv.Precomputed.Dp.Bytes(), DQ: priv.Precomputed.Dq.Bytes(), QI: priv.Precomputed.Qinv.Bytes()}}, nil)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if imp.Key.D != nil || string(imp.Key.N) != string(priv.N.Bytes()) {
		t.Fatal("import answer must hold the public key only")
	}
	ct, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &priv.PublicKey, dek, nil)
	uw, err := c.UnwrapKey(ctx, "imported", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: ct}, nil)
	if err != nil || string(uw.Result) != string(dek) {
		t.Fatalf("unwrap with imported key: %v", err)
	}

	// Paging: more keys than one page holds.
	for i := 0; i < 20; i++ {
		if _, err := c.CreateKey(ctx, "many-"+strconv.Itoa(i), azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOct), KeySize: to.Ptr[int32](128)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	pages, count := 0, 0
	for pg := c.NewListKeyPropertiesPager(nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatalf("list keys: %v", err)
		}
		pages++
		for _, k := range page.Value {
			kidParts(t, k.KID)
			count++
		}
	}
	if pages < 2 || count != 31 { // 11 keys above and 20 here
		t.Fatalf("listed %d keys in %d pages, want 31 keys in 2 or more", count, pages)
	}

	// Rotation policy.
	pol, err := c.UpdateKeyRotationPolicy(ctx, "kek", azkeys.KeyRotationPolicy{
		LifetimeActions: []*azkeys.LifetimeAction{{Action: &azkeys.LifetimeActionType{Type: to.Ptr(azkeys.KeyRotationPolicyActionRotate)},
			Trigger: &azkeys.LifetimeActionTrigger{TimeAfterCreate: to.Ptr("P30D")}}},
		Attributes: &azkeys.KeyRotationPolicyAttributes{ExpiryTime: to.Ptr("P90D")}}, nil)
	if err != nil {
		t.Fatalf("set rotation policy: %v", err)
	}
	gp, err := c.GetKeyRotationPolicy(ctx, "kek", nil)
	if err != nil || len(gp.LifetimeActions) != 1 || *gp.LifetimeActions[0].Trigger.TimeAfterCreate != "P30D" || *gp.Attributes.ExpiryTime != "P90D" || gp.Attributes.Created == nil {
		t.Fatalf("get rotation policy: %v %+v", err, pol)
	}
	_, err = c.UpdateKeyRotationPolicy(ctx, "kek", azkeys.KeyRotationPolicy{LifetimeActions: []*azkeys.LifetimeAction{{
		Action: &azkeys.LifetimeActionType{Type: to.Ptr(azkeys.KeyRotationPolicyActionRotate)}, Trigger: &azkeys.LifetimeActionTrigger{TimeAfterCreate: to.Ptr("soon")}}}}, nil)
	wantStatus(t, err, 400, "BadParameter")

	// Random bytes.
	rb, err := c.GetRandomBytes(ctx, azkeys.GetRandomBytesParameters{Count: to.Ptr[int32](32)}, nil)
	if err != nil || len(rb.Value) != 32 {
		t.Fatalf("random bytes: %v", err)
	}

	// An identity without unwrapKey gets 403; with wrapKey it wraps.
	rc := client(t, e, e.HostURL("team1"), reader, false)
	if _, err := rc.WrapKey(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: dek}, nil); err != nil {
		t.Fatalf("wrap with wrapKey permission: %v", err)
	}
	_, err = rc.UnwrapKey(ctx, "kek", v2, azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: w2.Result}, nil)
	wantStatus(t, err, 403, "Forbidden")

	// Backup, then restore into another vault; a tampered blob is refused.
	bk, err := c.BackupKey(ctx, "kek", nil)
	if err != nil || len(bk.Value) == 0 {
		t.Fatalf("backup: %v", err)
	}
	c2 := client(t, e, e.HostURL("team2"), app, false)
	bad := append([]byte{}, bk.Value...)
	bad[len(bad)-1] ^= 1
	_, err = c2.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: bad}, nil)
	wantStatus(t, err, 400, "BadParameter")
	rs, err := c2.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: bk.Value}, nil)
	if err != nil || rs.Key.KID.Version() != v2 {
		t.Fatalf("restore: %v", err)
	}
	un, err = c2.UnwrapKey(ctx, "kek", v2, azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: w2.Result}, nil)
	if err != nil || string(un.Result) != string(dek) {
		t.Fatalf("unwrap with the restored key: %v", err)
	}
	// The restored old version keeps its attributes (it was expired above).
	_, err = c2.UnwrapKey(ctx, "kek", v1, azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: w1.Result}, nil)
	wantStatus(t, err, 403, "Forbidden")
	_, err = c2.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: bk.Value}, nil)
	wantStatus(t, err, 409, "Conflict")

	// Delete → 404 → deleted key visible → recover → works again.
	del, err := c.DeleteKey(ctx, "kek", nil)
	if err != nil || del.RecoveryID == nil || del.ScheduledPurgeDate == nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = c.GetKey(ctx, "kek", "", nil)
	wantStatus(t, err, 404, "KeyNotFound")
	_, err = c.WrapKey(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: dek}, nil)
	wantStatus(t, err, 404, "KeyNotFound")
	_, err = c.CreateKey(ctx, "kek", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil)
	wantStatus(t, err, 409, "Conflict")
	if dk, err := c.GetDeletedKey(ctx, "kek", nil); err != nil || dk.Key.KID.Version() != v2 {
		t.Fatalf("get deleted: %v", err)
	}
	found := false
	for pg := c.NewListDeletedKeyPropertiesPager(nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page.Value {
			found = found || d.KID.Name() == "kek"
		}
	}
	if !found {
		t.Fatal("deleted key not listed")
	}
	// Purge is refused under purge protection.
	_, err = c.PurgeDeletedKey(ctx, "kek", nil)
	wantStatus(t, err, 403, "Forbidden")
	if _, err := c.RecoverDeletedKey(ctx, "kek", nil); err != nil {
		t.Fatalf("recover: %v", err)
	}
	un, err = c.UnwrapKey(ctx, "kek", v2, azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: w2.Result}, nil)
	if err != nil || string(un.Result) != string(dek) {
		t.Fatalf("unwrap after recover: %v", err)
	}
	// Without purge protection, purge works and the name is free again.
	if _, err := c2.DeleteKey(ctx, "kek", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.PurgeDeletedKey(ctx, "kek", nil); err != nil {
		t.Fatalf("purge: %v", err)
	}
	_, err = c2.GetDeletedKey(ctx, "kek", nil)
	wantStatus(t, err, 404, "KeyNotFound")
	if _, err := c2.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: bk.Value}, nil); err != nil {
		t.Fatalf("restore after purge: %v", err)
	}
}

// TestAzkeysSDKVaultPort reaches a vault on a port of its own, by the URL the vault reports
// (no DNS name needed); the port is opened while the server runs.
func TestAzkeysSDKVaultPort(t *testing.T) {
	e := vaulttest.Start(t, nil)
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	v := e.CreateVault(t, "ported", map[string]any{"port": port})
	if v.VaultURI != "https://127.0.0.1:"+strconv.Itoa(port) {
		t.Fatalf("vault URL %q", v.VaultURI)
	}
	app := e.ServicePrincipal(t, "app")
	e.SetPolicy(t, "ported", app.ObjectID, "create", "get", "wrapKey", "unwrapKey")
	// By address no resource can be a parent of the vault host: the documented option.
	c := client(t, e, v.VaultURI, app, true)
	k, err := c.CreateKey(ctx, "k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil)
	if err != nil {
		t.Fatalf("create through the vault port: %v", err)
	}
	if want := v.VaultURI + "/keys/k/"; string(*k.Key.KID)[:len(want)] != want {
		t.Fatalf("kid %s does not start with %s", *k.Key.KID, want)
	}
	w, err := c.WrapKey(ctx, "k", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP), Value: []byte("0123456789abcdef")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.UnwrapKey(ctx, "k", w.KID.Version(), azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP), Value: w.Result}, nil)
	if err != nil || string(u.Result) != "0123456789abcdef" {
		t.Fatalf("unwrap: %v", err)
	}
	// The same vault by host name on the main port.
	hc := client(t, e, e.HostURL("ported"), app, false)
	if _, err := hc.GetKey(ctx, "k", "", nil); err != nil {
		t.Fatalf("by host name: %v", err)
	}
	// Deleting the port closes it.
	e.MustDo(t, "PATCH", "/coffer/v1/vaults/ported", map[string]any{"port": 0}, nil)
	resp, err := e.HTTP.Get(v.VaultURI + "/keys?api-version=7.4")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("after removing the port it answers %d", resp.StatusCode)
		}
	}
}

// TestRBACVaultAndRestart: a vault using RBAC follows role assignments, not access
// policies; after a restart the vault's own port is opened with the server and keys sealed
// under the root key still work.
func TestRBACVaultAndRestart(t *testing.T) {
	e := vaulttest.Start(t, nil)
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	v := e.CreateVault(t, "rbac", map[string]any{"enableRbacAuthorization": true, "port": port})
	user := e.ServicePrincipal(t, "crypto-user")
	e.MustDo(t, "POST", "/coffer/v1/role-assignments", map[string]any{"role": "Key Vault Crypto User", "assignee": user.ObjectID, "scope": "/vaults/rbac"}, nil)
	// An access policy is ignored by an RBAC vault.
	e.SetPolicy(t, "rbac", user.ObjectID, "all")
	e.MustDo(t, "POST", "/coffer/v1/vaults/rbac/keys/kek/create", map[string]any{"kty": "RSA"}, nil)

	c := client(t, e, v.VaultURI, user, true)
	dek := []byte("0123456789abcdef0123456789abcdef")
	alg := to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256)
	w, err := c.WrapKey(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: alg, Value: dek}, nil)
	if err != nil {
		t.Fatalf("wrap with Crypto User: %v", err)
	}
	_, err = c.CreateKey(ctx, "other", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil)
	wantStatus(t, err, 403, "Forbidden")
	_, err = c.DeleteKey(ctx, "kek", nil)
	wantStatus(t, err, 403, "Forbidden")

	dataDir := e.Inst.DataDir
	e.Inst.Stop()
	e2 := vaulttest.Start(t, func(c *config.Server) { c.DataDir = dataDir })
	c2 := client(t, e2, v.VaultURI, user, true)
	un, err := c2.UnwrapKey(ctx, "kek", w.KID.Version(), azkeys.KeyOperationParameters{Algorithm: alg, Value: w.Result}, nil)
	if err != nil || string(un.Result) != string(dek) {
		t.Fatalf("unwrap after restart on the vault's port: %v", err)
	}
}
