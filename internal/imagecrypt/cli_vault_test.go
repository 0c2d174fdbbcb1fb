package imagecrypt_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/imagecrypt"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// user creates a user of the server and returns its object id.
func (e *env) user(t *testing.T, name, password string) string {
	t.Helper()
	var u wire.Identity
	e.MustDo(t, "POST", "/coffer/v1/users", wire.CreateUserRequest{Name: name, Password: password}, &u)
	return u.ID
}

func (e *env) assignRole(t *testing.T, role, assignee, scope string) {
	t.Helper()
	e.MustDo(t, "POST", "/coffer/v1/role-assignments", wire.CreateRoleAssignmentRequest{Role: role, Assignee: assignee, Scope: scope}, nil)
}

// login runs `coffer login` as name in c's configuration directory.
func (c *cli) login(t *testing.T, e *env, name, password string) {
	t.Helper()
	if _, stderr, code := c.run(t, password, nil, "login", e.Inst.URL, "-u", name, "--password-stdin", "--ca-file", e.Inst.CAFile, "-o", "json"); code != 0 {
		t.Fatalf("login as %s: exit %d: %s", name, code, stderr)
	}
}

// TestCLIVaultWithLogin: after `coffer login`, and with no AZURE_* variable, vault: as a
// recipient and as a key reaches the server's vault through the management API as the
// logged-in user: encrypt and decrypt round-trip, the audit trail shows one unwrap per
// layer by that user, a user without unwrapKey is refused with a message naming the
// permission and nothing is written, a vault found only through the user's role
// assignment works too, and an explicit AZURE_CLIENT_ID/AZURE_CLIENT_SECRET wins.
func TestCLIVaultWithLogin(t *testing.T) {
	e := newEnv(t)
	const pw = "correct-horse-battery-staple"
	alice := e.user(t, "alice", pw)
	bob := e.user(t, "bob", pw)
	// The vault lives on a port of its own: alice and bob find it in the vault list
	// (vault/read from Key Vault Reader); its key permissions come from access policies.
	for _, u := range []string{alice, bob} {
		e.assignRole(t, "Key Vault Reader", u, "/vaults/images")
	}
	e.SetPolicy(t, "images", alice, "get", "unwrapKey")
	e.SetPolicy(t, "images", bob, "get")

	src := testImage(t, filepath.Join(e.dir, "src"), "v1", 2, 64<<10)
	want := readLayout(t, src)
	enc := "oci:" + filepath.Join(e.dir, "enc") + ":v1"

	a := newCLI(t)
	a.login(t, e, "alice", pw)
	var res imagecrypt.Result
	a.ok(t, &res, nil, "image", "encrypt", src, enc, "--recipient", "vault:"+e.keyURL, "-o", "json")
	if len(res.Images) != 1 || len(res.Images[0].Layers) != 2 || !res.Images[0].Layers[0].Encrypted {
		t.Fatalf("encrypt -o json = %+v", res)
	}
	// The JWE is the standard one: the private key file opens it too.
	a.ok(t, nil, nil, "image", "decrypt", enc, "oci:"+filepath.Join(e.dir, "by-pem")+":v1", "--key", e.privPEM)

	before := len(e.audit(t, "KeyUnwrapKey"))
	dec := "oci:" + filepath.Join(e.dir, "dec") + ":v1"
	a.ok(t, &res, nil, "image", "decrypt", enc, dec, "--key", "vault:"+e.keyURL, "-o", "json")
	sameLayers(t, want, readLayout(t, dec))
	recs := e.audit(t, "KeyUnwrapKey")[before:]
	if len(recs) != len(want.manifest.Layers) {
		t.Fatalf("%d unwrap records for %d layers: %+v", len(recs), len(want.manifest.Layers), recs)
	}
	for _, r := range recs {
		if r.PrincipalID != alice || r.PrincipalKind != "user" || r.Result != "success" {
			t.Fatalf("audit record %+v: want a successful unwrap by the user alice (%s)", r, alice)
		}
	}

	// bob may read the key (so he may encrypt to it) but not unwrap with it.
	b := newCLI(t)
	b.login(t, e, "bob", pw)
	b.ok(t, nil, nil, "image", "encrypt", src, "oci:"+filepath.Join(e.dir, "enc-bob")+":v1", "--recipient", "vault:"+e.keyURL)
	before = len(e.audit(t, "KeyUnwrapKey"))
	out := filepath.Join(e.dir, "dec-bob")
	_, stderr, code := b.run(t, "", nil, "image", "decrypt", enc, "oci:"+out+":v1", "--key", "vault:"+e.keyURL)
	if code != 1 || !strings.Contains(stderr, "missing private key needed for decryption") || !strings.Contains(stderr, "unwrapKey permission") || !strings.Contains(stderr, "access to the key is denied") {
		t.Fatalf("decrypt as bob: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a refused decryption left its destination")
	}
	for _, r := range e.audit(t, "KeyUnwrapKey")[before:] {
		if r.PrincipalID != bob || r.Result == "success" {
			t.Fatalf("audit record of bob's attempt: %+v", r)
		}
	}

	// A vault that carol can find only through her role assignment (an RBAC vault on a
	// port of its own, no vault/read): found by reading the key there.
	rv := e.CreateVault(t, "rbac", map[string]any{"port": freePort(t), "enableRbacAuthorization": true})
	var k wire.Key
	e.MustDo(t, "POST", "/coffer/v1/vaults/rbac/keys/image-key/create", wire.CreateKeyRequest{Kty: "RSA", Size: 2048}, &k)
	carol := e.user(t, "carol", pw)
	e.assignRole(t, "Key Vault Crypto Service Encryption User", carol, "/vaults/rbac")
	c := newCLI(t)
	c.login(t, e, "carol", pw)
	rkey := rv.VaultURI + "/keys/image-key"
	renc := "oci:" + filepath.Join(e.dir, "renc") + ":v1"
	c.ok(t, nil, nil, "image", "encrypt", src, renc, "--recipient", "vault:"+rkey)
	rdec := "oci:" + filepath.Join(e.dir, "rdec") + ":v1"
	c.ok(t, nil, nil, "image", "decrypt", renc, rdec, "--key", "vault:"+rkey)
	sameLayers(t, want, readLayout(t, rdec))

	// An explicit service principal in AZURE_* wins over the login: the unwraps are the
	// node's.
	before = len(e.audit(t, "KeyUnwrapKey"))
	a.ok(t, nil, e.azureEnv(e.node), "image", "decrypt", enc, "oci:"+filepath.Join(e.dir, "dec-node")+":v1", "--key", "vault:"+e.keyURL)
	for _, r := range e.audit(t, "KeyUnwrapKey")[before:] {
		if r.PrincipalID != e.node.ObjectID {
			t.Fatalf("with AZURE_* set, unwrap by %s (%s), want the node", r.PrincipalName, r.PrincipalID)
		}
	}
}

// freePort is a TCP port free on 127.0.0.1 (for a vault on a port of its own).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
