package resolve

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/vault"
)

// TestCredentialPrecedence: the client secret is used only for the identity it belongs to
// (or [system]) and only when both its client id and secret are set; every other case asks
// the managed-identity endpoint for the identity's client id.
func TestCredentialPrecedence(t *testing.T) {
	full := Credential{TenantID: "t", ClientID: "App-1", ClientSecret: "s", AuthorityHost: "https://kv.example/"}
	cases := []struct {
		name      string
		cred      Credential
		ident     string
		secret    bool
		managedID string
	}{
		{"system uses the client secret", full, "[system]", true, ""},
		{"empty identity is system", full, "", true, ""},
		{"the secret's own client id", full, "App-1", true, ""},
		{"client id compared case-insensitively", full, "app-1", true, ""},
		{"another identity: managed identity", full, "mi-2", false, "mi-2"},
		{"no secret: managed identity", Credential{TenantID: "t", ClientID: "App-1"}, "App-1", false, "App-1"},
		{"no client id: managed identity", Credential{TenantID: "t", ClientSecret: "s"}, "[system]", false, ""},
		{"nothing configured, system: host's default identity", Credential{}, "[system]", false, ""},
		{"nothing configured, managed identity", Credential{}, "mi-3", false, "mi-3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := chooseCredential(c.cred, c.ident)
			if got.secret != c.secret || got.managedID != c.managedID {
				t.Fatalf("chooseCredential(%+v, %q) = %+v; want secret=%v managedID=%q", c.cred, c.ident, got, c.secret, c.managedID)
			}
			if got.secret && got.cred != c.cred {
				t.Fatalf("the client-secret choice lost the credential: %+v", got.cred)
			}
		})
	}
}

// fakeLocal says every vault URL is remote, or fails.
type fakeLocal struct{ err error }

func (f fakeLocal) LocalVault(ctx context.Context, vaultURL string) (string, bool, error) {
	return "", false, f.err
}

type fakeIdentities struct{}

func (fakeIdentities) SystemIdentity() identity.Principal { return identity.Principal{} }
func (fakeIdentities) Resolve(ctx context.Context, ref string) (identity.Principal, error) {
	return identity.Principal{}, identity.ErrNotFound
}

type stubKEK struct {
	kek.KEK
	choice credentialChoice
	vault  string
}

func newTestResolver(t *testing.T, o Options) (*Resolver, *[]stubKEK) {
	t.Helper()
	if o.Vault == nil {
		o.Vault = &vault.Service{} // never called: every vault is remote here
	}
	if o.Local == nil {
		o.Local = fakeLocal{}
	}
	o.Identities = fakeIdentities{}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	var made []stubKEK
	r.newREST = func(c credentialChoice, vaultURL string, hc *http.Client) (kek.KEK, error) {
		made = append(made, stubKEK{choice: c, vault: vaultURL})
		return &made[len(made)-1], nil
	}
	return r, &made
}

// TestRESTDriversAreCachedPerIdentityAndVault: one REST driver per identity and vault, as
// before the resolver moved (its token and connections are reused).
func TestRESTDriversAreCachedPerIdentityAndVault(t *testing.T) {
	ctx := context.Background()
	r, made := newTestResolver(t, Options{Credential: Credential{ClientID: "app", ClientSecret: "s"}})
	get := func(ident, keyID string) kek.KEK {
		t.Helper()
		k, err := r.KEK(ctx, ident, keyID)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a := get("[system]", "https://kv1.example/keys/k1")
	if b := get("[system]", "https://kv1.example/keys/other/v2"); b != a {
		t.Fatal("a second key in the same vault as the same identity made a new driver")
	}
	if c := get("mi-1", "https://kv1.example/keys/k1"); c == a {
		t.Fatal("another identity shares the driver")
	}
	if d := get("[system]", "https://kv2.example/keys/k1"); d == a {
		t.Fatal("another vault shares the driver")
	}
	if len(*made) != 3 {
		t.Fatalf("%d drivers made, want 3", len(*made))
	}
	if !(*made)[0].choice.secret || (*made)[1].choice.secret || (*made)[1].choice.managedID != "mi-1" || (*made)[2].vault != "https://kv2.example" {
		t.Fatalf("drivers made: %+v", *made)
	}
}

// TestResolveErrors: a malformed key id, a failing local-vault lookup and a bad CA file are
// reported, and a failed attempt caches nothing.
func TestResolveErrors(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestResolver(t, Options{})
	if _, err := r.KEK(ctx, "", "https://kv.example/secrets/x"); !errors.Is(err, kek.ErrInvalidKeyID) {
		t.Fatalf("malformed key id: %v", err)
	}
	boom := errors.New("metadata store unavailable")
	r, _ = newTestResolver(t, Options{Local: fakeLocal{err: boom}})
	if _, err := r.KEK(ctx, "", "https://kv.example/keys/k"); !errors.Is(err, boom) {
		t.Fatalf("local vault lookup failure: %v", err)
	}
	r, made := newTestResolver(t, Options{CAFile: filepath.Join(t.TempDir(), "missing.pem")})
	if _, err := r.KEK(ctx, "", "https://kv.example/keys/k"); err == nil || !strings.Contains(err.Error(), "--encryption-vault-ca-file") {
		t.Fatalf("missing CA file: %v", err)
	}
	if len(*made) != 0 || len(r.rest) != 0 {
		t.Fatal("a failed resolution made or cached a driver")
	}
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without its dependencies succeeded")
	}
}

// TestCAFile: the remote drivers' HTTP client trusts the system roots plus the CA file, and
// refuses a file that holds no certificate.
func TestCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	get := func(caFile string) error {
		r, _ := newTestResolver(t, Options{CAFile: caFile})
		hc, err := r.httpClient()
		if err != nil {
			return err
		}
		resp, err := hc.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(caFile); err != nil {
		t.Fatalf("with the CA file: %v", err)
	}
	if err := get(""); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA file the private CA must not be trusted: %v", err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	if err := get(notPEM); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Fatalf("a CA file without a certificate: %v", err)
	}
}
