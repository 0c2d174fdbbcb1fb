package resolve_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/kek/inproc"
	"github.com/cofferhq/coffer/internal/kek/resolve"
	"github.com/cofferhq/coffer/internal/seal/keyring"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/vault"
)

var _ keyring.Resolver = (*resolve.Resolver)(nil)

func TestSystemIdentityIsTheKeyrings(t *testing.T) {
	if resolve.SystemIdentity != keyring.SystemIdentity {
		t.Fatalf("resolve.SystemIdentity %q differs from keyring.SystemIdentity %q", resolve.SystemIdentity, keyring.SystemIdentity)
	}
}

const domain = "vault.test"

type env struct {
	ids *identity.Service
	acc *access.Service
	svc *vault.Service
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	db := storetest.SQLite(t)
	ids, err := identity.Open(ctx, db, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	acc, err := access.New(ctx, db, ids, access.Options{})
	if err != nil {
		t.Fatal(err)
	}
	root := make([]byte, 32)
	rand.Read(root)
	svc, err := vault.New(ctx, vault.Options{DB: db, RootKey: root,
		Authorizer: acc, Addresses: vault.Addresses{Scheme: "https", Domain: domain}})
	if err != nil {
		t.Fatal(err)
	}
	return &env{ids: ids, acc: acc, svc: svc}
}

func (e *env) resolver(t *testing.T, o resolve.Options) *resolve.Resolver {
	t.Helper()
	o.Vault, o.Local, o.Identities = e.svc, e.svc, e.ids
	r, err := resolve.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestLocalVaultInProcess: a key in one of this process's vaults is reached in-process, as
// the identity's own principal (its access policy decides), and only the system identity or
// a managed identity may be used.
func TestLocalVaultInProcess(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	admin := vault.AsServer(ctx)
	if _, err := e.svc.CreateVault(admin, identity.Principal{}, vault.Vault{Name: "team"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateKey(admin, identity.Principal{}, "team", "cmk", vault.CreateKeyParams{Kty: "RSA"}); err != nil {
		t.Fatal(err)
	}
	mi, err := e.ids.CreateManagedIdentity(ctx, "registry-cmk")
	if err != nil {
		t.Fatal(err)
	}
	sys := e.ids.SystemIdentity()
	if _, err := e.acc.SetPolicy(ctx, "team", sys.ID, []string{"get"}); err != nil {
		t.Fatal(err)
	}
	// Remote credentials are configured, and must not be used for a local vault.
	r := e.resolver(t, resolve.Options{Credential: resolve.Credential{TenantID: "t", ClientID: "app", ClientSecret: "s"}})
	keyID := "https://team." + domain + "/keys/cmk"

	for _, ident := range []string{"", "[system]"} {
		k, err := r.KEK(ctx, ident, keyID)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := k.(*inproc.Driver); !ok {
			t.Fatalf("identity %q: driver %T, want the in-process driver", ident, k)
		}
		if _, err := k.GetKey(ctx, keyID); err != nil {
			t.Fatalf("identity %q with the system identity's get permission: %v", ident, err)
		}
	}
	// The managed identity has no policy yet: its own principal is refused.
	for _, ref := range []string{mi.ClientID, mi.ID} {
		k, err := r.KEK(ctx, ref, keyID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.GetKey(ctx, keyID); !errors.Is(err, kek.ErrForbidden) {
			t.Fatalf("managed identity %s without a policy: %v", ref, err)
		}
	}
	if _, err := e.acc.SetPolicy(ctx, "team", mi.ID, []string{"get"}); err != nil {
		t.Fatal(err)
	}
	k, _ := r.KEK(ctx, mi.ClientID, keyID)
	if _, err := k.GetKey(ctx, keyID); err != nil {
		t.Fatalf("managed identity with get: %v", err)
	}

	// A user is not an identity the registry acts as; an unknown one is not found.
	user, err := e.ids.CreateUser(ctx, "alice", "a-long-password-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.KEK(ctx, user.ID, keyID); err == nil || !strings.Contains(err.Error(), "managed identity") {
		t.Fatalf("a user as the identity: %v", err)
	}
	if _, err := r.KEK(ctx, "no-such-identity", keyID); !errors.Is(err, identity.ErrNotFound) || !strings.Contains(err.Error(), "no-such-identity") {
		t.Fatalf("an unknown identity: %v", err)
	}
	// A vault name of this domain that does not exist is not local: the REST driver.
	if k, err := r.KEK(ctx, "", "https://nosuch."+domain+"/keys/cmk"); err != nil {
		t.Fatal(err)
	} else if _, ok := k.(*inproc.Driver); ok {
		t.Fatal("a vault this server does not have was resolved in-process")
	}
}

// fakeRemote is another server's key vault with its token service and managed-identity
// endpoint, over TLS with its own CA: it records which token reached the vault.
type fakeRemote struct {
	srv          *httptest.Server
	caFile       string
	tenant       string
	clientID     string
	clientSecret string
	header       string

	mu     sync.Mutex
	tokens []string
}

func newFakeRemote(t *testing.T) *fakeRemote {
	t.Helper()
	const tenant = "tenant-1"
	f := &fakeRemote{tenant: tenant, clientID: "app-1", clientSecret: "secret-1", header: "header-1"}
	mux := http.NewServeMux()
	writeJSON := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /"+tenant+"/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		auth := f.srv.URL + "/" + tenant
		writeJSON(w, 200, map[string]any{
			"issuer": auth + "/v2.0", "token_endpoint": auth + "/oauth2/v2.0/token",
			"authorization_endpoint": auth + "/oauth2/v2.0/authorize", "tenant_region_scope": "NA",
		})
	})
	mux.HandleFunc("POST /"+tenant+"/oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.Form.Get("client_id") != f.clientID || r.Form.Get("client_secret") != f.clientSecret {
			writeJSON(w, 401, map[string]any{"error": "invalid_client", "error_description": "wrong client credentials"})
			return
		}
		writeJSON(w, 200, map[string]any{"access_token": "secret:" + f.clientID, "token_type": "Bearer", "expires_in": 3600})
	})
	mux.HandleFunc("GET /msi/token", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-IDENTITY-HEADER") != f.header {
			writeJSON(w, 401, map[string]any{"error": "invalid_request"})
			return
		}
		writeJSON(w, 200, map[string]any{
			"access_token": "mi:" + r.URL.Query().Get("client_id"), "token_type": "Bearer",
			"expires_on": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10), "resource": r.URL.Query().Get("resource"),
		})
	})
	mux.HandleFunc("GET /keys/{name}/{version...}", func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="%s/%s", resource="https://vault.azure.net"`, f.srv.URL, f.tenant))
			writeJSON(w, 401, map[string]any{"error": map[string]any{"code": "Unauthorized", "message": "no token"}})
			return
		}
		f.mu.Lock()
		f.tokens = append(f.tokens, tok)
		f.mu.Unlock()
		writeJSON(w, 200, map[string]any{
			"key":        map[string]any{"kid": f.srv.URL + "/keys/" + r.PathValue("name") + "/v1", "kty": "RSA", "key_ops": []string{"wrapKey", "unwrapKey"}},
			"attributes": map[string]any{"enabled": true},
		})
	})
	f.srv = httptest.NewTLSServer(mux)
	t.Cleanup(f.srv.Close)
	f.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(f.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeRemote) lastToken() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.tokens) == 0 {
		return ""
	}
	return f.tokens[len(f.tokens)-1]
}

// TestRemoteVaultWithClientSecret: a key in a vault of another server is reached over
// HTTPS (its private CA trusted through CAFile: TestCAFile shows it is not otherwise) with the configured client secret, from the
// configured token service, for [system] and for the secret's own client id.
func TestRemoteVaultWithClientSecret(t *testing.T) {
	ctx := context.Background()
	f := newFakeRemote(t)
	// The managed-identity endpoint is there too; the client secret must win.
	t.Setenv("IDENTITY_ENDPOINT", f.srv.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", f.header)
	r := newEnv(t).resolver(t, resolve.Options{CAFile: f.caFile, Credential: resolve.Credential{
		TenantID: f.tenant, ClientID: f.clientID, ClientSecret: f.clientSecret, AuthorityHost: f.srv.URL + "/",
	}})
	keyID := f.srv.URL + "/keys/cmk"
	for _, ident := range []string{"[system]", strings.ToUpper(f.clientID)} {
		k, err := r.KEK(ctx, ident, keyID)
		if err != nil {
			t.Fatal(err)
		}
		info, err := k.GetKey(ctx, keyID)
		if err != nil || info.KID != keyID+"/v1" {
			t.Fatalf("identity %s: GetKey = %+v, %v", ident, info, err)
		}
		if got := f.lastToken(); got != "secret:"+f.clientID {
			t.Fatalf("identity %s: the vault saw token %q, want the client-secret credential's", ident, got)
		}
	}
}

// TestRemoteVaultWithManagedIdentity: with no client secret for the identity, the
// managed-identity endpoint is asked for the identity's client id. The Azure SDK reads the
// endpoint itself from IDENTITY_ENDPOINT and IDENTITY_HEADER in the process environment
// (it has no option for them); this is that path, end to end.
func TestRemoteVaultWithManagedIdentity(t *testing.T) {
	ctx := context.Background()
	f := newFakeRemote(t)
	t.Setenv("IDENTITY_ENDPOINT", f.srv.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", f.header)
	// A client secret for another identity is configured: it must not be used for mi-7.
	r := newEnv(t).resolver(t, resolve.Options{CAFile: f.caFile, Credential: resolve.Credential{
		TenantID: f.tenant, ClientID: f.clientID, ClientSecret: f.clientSecret, AuthorityHost: f.srv.URL + "/",
	}})
	keyID := f.srv.URL + "/keys/cmk"
	k, err := r.KEK(ctx, "mi-7", keyID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.GetKey(ctx, keyID); err != nil {
		t.Fatal(err)
	}
	if got := f.lastToken(); got != "mi:mi-7" {
		t.Fatalf("the vault saw token %q, want the managed identity mi-7's", got)
	}
}
