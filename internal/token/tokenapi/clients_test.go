package tokenapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	cofferauthn "github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/token"
)

// protectedRegistry is a minimal registry front that challenges like Coffer's registry
// does (Bearer realm = Coffer's token endpoint) and checks tokens with Coffer's Verifier
// and their access claim. It serves an empty tag list.
func protectedRegistry(t *testing.T, realm string, v cofferauthn.Verifier) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repo, isTags := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v2/"), "/tags/list")
		scope := ""
		if isTags {
			scope = "repository:" + repo + ":pull"
		}
		challenge := func() {
			c := fmt.Sprintf(`Bearer realm=%q,service=%q`, realm, token.RegistryService)
			if scope != "" {
				c += fmt.Sprintf(`,scope=%q`, scope)
			}
			w.Header().Set("WWW-Authenticate", c)
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		}
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			challenge()
			return
		}
		claims, err := v.Verify(r.Context(), raw, token.RegistryService)
		if err != nil {
			challenge()
			return
		}
		if isTags {
			allowed := false
			for _, a := range claims.Access {
				if a.Type == "repository" && a.Name == repo && strings.Contains(","+strings.Join(a.Actions, ",")+",", ",pull,") {
					allowed = true
				}
			}
			if !allowed {
				challenge()
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"name":%q,"tags":["v1"]}`, repo)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestGoContainerRegistryTokenFlow(t *testing.T) {
	inst := servertest.Start(t, nil)
	ctx := context.Background()
	// The realm names the server by host name: go-containerregistry refuses a realm that is
	// a private IP literal unless it is the registry's own host:port (as Coffer's registry's
	// realm is).
	realm := "https://" + strings.Replace(inst.Addr, "127.0.0.1", "localhost", 1) + "/oauth2/token"
	reg := protectedRegistry(t, realm, inst.Server.TokenVerifier())
	repo, err := name.NewRepository(strings.TrimPrefix(reg.URL, "http://")+"/team/app", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	list := func(auth authn.Authenticator) ([]string, error) {
		return remote.List(repo, remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(inst.Client.Transport))
	}

	tags, err := list(&authn.Basic{Username: "admin", Password: inst.AdminPassword})
	if err != nil {
		t.Fatalf("admin list through the token flow: %v", err)
	}
	if len(tags) != 1 || tags[0] != "v1" {
		t.Fatalf("tags %v", tags)
	}

	// The transport directly, as pull/push code uses it.
	tr, err := transport.NewWithContext(ctx, repo.Registry, &authn.Basic{Username: "admin", Password: inst.AdminPassword},
		inst.Client.Transport, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		t.Fatalf("transport.NewWithContext: %v", err)
	}
	resp, err := (&http.Client{Transport: tr}).Get(reg.URL + "/v2/team/app/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("tags through the bearer transport: %d", resp.StatusCode)
	}

	// A wrong password fails at the token endpoint.
	_, err = list(&authn.Basic{Username: "admin", Password: "wrong"})
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %v, want a 401 transport error", err)
	}

	// A user with no role gets a token without the pull grant, and the registry refuses.
	if _, err := inst.Server.Identities().CreateUser(ctx, "nobody", "nobody-password"); err != nil {
		t.Fatal(err)
	}
	if _, err := list(&authn.Basic{Username: "nobody", Password: "nobody-password"}); err == nil {
		t.Fatal("a user without any role listed the repository")
	}
}

func identityHeader(t *testing.T, inst *servertest.Instance) string {
	raw, err := os.ReadFile(filepath.Join(inst.DataDir, "keys", "identity-header"))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(filepath.Join(inst.DataDir, "keys", "identity-header"))
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("identity-header has mode %v, want 0600", info.Mode().Perm())
	}
	return strings.TrimSpace(string(raw))
}

func TestAzureClientSecretCredential(t *testing.T) {
	inst := servertest.Start(t, nil)
	ctx := context.Background()
	ids := inst.Server.Identities()
	sp, secret, err := ids.CreateServicePrincipal(ctx, "ci-deployer", 0)
	if err != nil {
		t.Fatal(err)
	}
	opts := &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: inst.URL + "/"},
			Transport: inst.Client,
		},
		DisableInstanceDiscovery: true,
	}
	cred, err := azidentity.NewClientSecretCredential(ids.TenantID(), sp.ClientID, secret.Value, opts)
	if err != nil {
		t.Fatal(err)
	}
	vault := token.VaultResource(inst.Config.Vault.Domain)
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{vault + "/.default"}})
	if err != nil {
		t.Fatalf("ClientSecretCredential.GetToken: %v", err)
	}
	c := verify(t, inst, tok.Token, vault)
	if c.ObjectID != sp.ID || c.AppID != sp.ClientID || c.TenantID != ids.TenantID() {
		t.Fatalf("claims oid=%s appid=%s tid=%s, want the service principal's", c.ObjectID, c.AppID, c.TenantID)
	}

	// A wrong secret is refused by the SDK with an authentication error.
	bad, _ := azidentity.NewClientSecretCredential(ids.TenantID(), sp.ClientID, "not-the-secret", opts)
	_, err = bad.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{vault + "/.default"}})
	var authErr *azidentity.AuthenticationFailedError
	if !errors.As(err, &authErr) || authErr.RawResponse.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %v, want AuthenticationFailedError with 401", err)
	}
	// An unknown resource is refused.
	_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://elsewhere.example/.default"}})
	if err == nil {
		t.Fatal("a token for an unknown resource was issued")
	}
}

func TestAzureDefaultCredentialFromEnvironment(t *testing.T) {
	inst := servertest.Start(t, nil)
	ctx := context.Background()
	ids := inst.Server.Identities()
	sp, secret, err := ids.CreateServicePrincipal(ctx, "env-app", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AZURE_AUTHORITY_HOST", inst.URL)
	t.Setenv("AZURE_TENANT_ID", ids.TenantID())
	t.Setenv("AZURE_CLIENT_ID", sp.ClientID)
	t.Setenv("AZURE_CLIENT_SECRET", secret.Value)
	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
		ClientOptions:            azcore.ClientOptions{Transport: inst.Client},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{token.AudienceManagement + "/.default"}})
	if err != nil {
		t.Fatalf("DefaultAzureCredential.GetToken: %v", err)
	}
	if c := verify(t, inst, tok.Token, token.AudienceManagement); c.AppID != sp.ClientID {
		t.Fatalf("appid %s, want %s", c.AppID, sp.ClientID)
	}
}

func TestAzureManagedIdentityCredential(t *testing.T) {
	inst := servertest.Start(t, nil)
	ctx := context.Background()
	ids := inst.Server.Identities()
	mi, err := ids.CreateManagedIdentity(ctx, "kms-plugin")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("IDENTITY_ENDPOINT", inst.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", identityHeader(t, inst))
	vault := token.VaultResource(inst.Config.Vault.Domain)
	scopes := policy.TokenRequestOptions{Scopes: []string{vault + "/.default"}}

	cases := []struct {
		name string
		id   azidentity.ManagedIDKind
		want string
	}{
		{"user-assigned by client id", azidentity.ClientID(mi.ClientID), mi.ID},
		{"user-assigned by object id", azidentity.ObjectID(mi.ID), mi.ID},
		{"system-assigned", nil, ids.SystemIdentity().ID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
				ClientOptions: azcore.ClientOptions{Transport: inst.Client},
				ID:            tc.id,
			})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := cred.GetToken(ctx, scopes)
			if err != nil {
				t.Fatalf("ManagedIdentityCredential.GetToken: %v", err)
			}
			if c := verify(t, inst, tok.Token, vault); c.ObjectID != tc.want {
				t.Fatalf("token for %s, want %s", c.ObjectID, tc.want)
			}
		})
	}

	// Without the right header the endpoint refuses. (MSAL caches managed-identity tokens
	// process-wide, so this asks the endpoint directly.)
	for _, hdr := range []string{"", "wrong"} {
		req, _ := http.NewRequest(http.MethodGet, inst.URL+"/msi/token?api-version=2019-08-01&resource="+vault, nil)
		if hdr != "" {
			req.Header.Set("X-IDENTITY-HEADER", hdr)
		}
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("X-IDENTITY-HEADER %q: %d, want 401", hdr, resp.StatusCode)
		}
	}
}
