package tokenapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/token"
)

type tokenAnswer struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
	Errors       []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

func getToken(t *testing.T, inst *servertest.Instance, user, pass string, query url.Values) (*http.Response, tokenAnswer) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, inst.URL+"/oauth2/token?"+query.Encode(), nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	return do(t, inst, req)
}

func postForm(t *testing.T, inst *servertest.Instance, path string, form url.Values) (*http.Response, tokenAnswer) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, inst.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, inst, req)
}

func do(t *testing.T, inst *servertest.Instance, req *http.Request) (*http.Response, tokenAnswer) {
	t.Helper()
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var ans tokenAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatalf("%s %s: %d, body is not JSON: %q", req.Method, req.URL.Path, resp.StatusCode, body)
	}
	return resp, ans
}

func verify(t *testing.T, inst *servertest.Instance, raw, aud string) *token.Claims {
	t.Helper()
	c, err := inst.Server.TokenVerifier().Verify(context.Background(), raw, aud)
	if err != nil {
		t.Fatalf("token does not verify for %s: %v", aud, err)
	}
	return c
}

func TestDockerTokenForAdminAndWrongPassword(t *testing.T) {
	inst := servertest.Start(t, nil)
	if inst.AdminPassword == "" {
		t.Fatal("no initial admin password file")
	}
	q := url.Values{"service": {token.RegistryService}, "scope": {"repository:team/app:pull,push", "registry:catalog:*"}}
	resp, ans := getToken(t, inst, "admin", inst.AdminPassword, q)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin token: %d %+v", resp.StatusCode, ans)
	}
	if ans.Token == "" || ans.Token != ans.AccessToken || ans.ExpiresIn <= 0 || ans.IssuedAt == "" {
		t.Fatalf("answer lacks token fields: %+v", ans)
	}
	if _, err := time.Parse(time.RFC3339, ans.IssuedAt); err != nil {
		t.Fatalf("issued_at %q: %v", ans.IssuedAt, err)
	}
	c := verify(t, inst, ans.Token, token.RegistryService)
	if c.Name != "admin" || c.Kind != "user" || c.ObjectID == "" {
		t.Fatalf("claims name the wrong principal: %+v", c)
	}
	got := map[string]string{}
	for _, a := range c.Access {
		got[a.Type+":"+a.Name] = strings.Join(a.Actions, ",")
	}
	if got["repository:team/app"] != "pull,push" || got["registry:catalog"] != "*" {
		t.Fatalf("admin's grant = %v, want pull,push on team/app and * on catalog", got)
	}
	// The token is for the registry only.
	if _, err := inst.Server.TokenVerifier().Verify(context.Background(), ans.Token, token.AudienceManagement); err == nil {
		t.Fatal("a registry token verified for the management audience")
	}

	resp, ans = getToken(t, inst, "admin", "wrong-password", q)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d, want 401", resp.StatusCode)
	}
	if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") || len(ans.Errors) != 1 || ans.Errors[0].Code != "UNAUTHORIZED" {
		t.Fatalf("wrong password answer: challenge %q body %+v", resp.Header.Get("WWW-Authenticate"), ans)
	}
	resp, _ = getToken(t, inst, "", "", q)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("no credentials: %d, want 401 with a challenge", resp.StatusCode)
	}
	resp, _ = getToken(t, inst, "admin", inst.AdminPassword, url.Values{"service": {"somebody-else"}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unknown service: %d, want 401", resp.StatusCode)
	}
}

func TestAnonymousPull(t *testing.T) {
	inst := servertest.Start(t, func(c *config.Server) { c.Registry.AnonymousPull = true })
	resp, ans := getToken(t, inst, "", "", url.Values{"service": {token.RegistryService}, "scope": {"repository:app:pull,push,delete"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("anonymous pull: %d %+v", resp.StatusCode, ans)
	}
	c := verify(t, inst, ans.Token, token.RegistryService)
	if len(c.Access) != 1 || strings.Join(c.Access[0].Actions, ",") != "pull" {
		t.Fatalf("anonymous grant %+v, want pull only", c.Access)
	}
	if ans.RefreshToken != "" {
		t.Fatal("anonymous caller got a refresh token")
	}
	// A signed-in user without any role may pull too (what anonymous callers may), but
	// not push.
	if _, err := inst.Server.Identities().CreateUser(context.Background(), "norole", "norole-password"); err != nil {
		t.Fatal(err)
	}
	_, ans = getToken(t, inst, "norole", "norole-password", url.Values{"service": {token.RegistryService}, "scope": {"repository:app:pull,push"}})
	c = verify(t, inst, ans.Token, token.RegistryService)
	if len(c.Access) != 1 || strings.Join(c.Access[0].Actions, ",") != "pull" {
		t.Fatalf("signed-in user without a role under anonymous pull: %+v, want pull only", c.Access)
	}
}

func TestRefreshFlowAndRevocation(t *testing.T) {
	inst := servertest.Start(t, nil)
	resp, ans := postForm(t, inst, "/oauth2/token", url.Values{
		"grant_type": {"password"}, "username": {"admin"}, "password": {inst.AdminPassword},
		"service": {token.RegistryService}, "scope": {"repository:app:pull"}, "client_id": {"docker"}, "access_type": {"offline"},
	})
	if resp.StatusCode != http.StatusOK || ans.RefreshToken == "" {
		t.Fatalf("password grant: %d %+v", resp.StatusCode, ans)
	}
	verify(t, inst, ans.AccessToken, token.RegistryService)
	refresh := ans.RefreshToken

	// docker's identity token gets registry tokens, never management ones: a leaked
	// ~/.docker/config.json does not take over the account.
	resp, ans = postForm(t, inst, "/oauth2/token", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "service": {token.RegistryService}, "scope": {"repository:app:pull"}, "client_id": {"docker"},
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh grant for the registry: %d %+v", resp.StatusCode, ans)
	}
	verify(t, inst, ans.AccessToken, token.RegistryService)
	resp, ans = postForm(t, inst, "/oauth2/token", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "service": {token.AudienceManagement}, "client_id": {"coffer-cli"},
	})
	if resp.StatusCode != http.StatusBadRequest || ans.Error != "invalid_grant" {
		t.Fatalf("registry refresh token redeemed for management: %d %+v, want 400 invalid_grant", resp.StatusCode, ans)
	}
	mgmtToken := adminToken(t, inst)

	// A tampered refresh token is refused.
	resp, ans = postForm(t, inst, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh + "x"}, "service": {token.RegistryService}})
	if resp.StatusCode != http.StatusUnauthorized || ans.Error != "invalid_grant" {
		t.Fatalf("tampered refresh token: %d %+v", resp.StatusCode, ans)
	}

	// Changing the password revokes the refresh token.
	// A token alone is not the password: changing one's own needs the current one.
	passwd := func(body string) int {
		req, _ := http.NewRequest(http.MethodPut, inst.URL+"/coffer/v1/users/admin/password", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+mgmtToken)
		req.Header.Set("Content-Type", "application/json")
		r2, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r2.Body.Close()
		return r2.StatusCode
	}
	if st := passwd(`{"password":"a-brand-new-password"}`); st != http.StatusBadRequest {
		t.Fatalf("passwd without the current password: %d, want 400", st)
	}
	if st := passwd(`{"password":"a-brand-new-password","currentPassword":"not-it"}`); st != http.StatusForbidden {
		t.Fatalf("passwd with a wrong current password: %d, want 403", st)
	}
	if st := passwd(`{"password":"a-brand-new-password","currentPassword":"` + inst.AdminPassword + `"}`); st != http.StatusNoContent {
		t.Fatalf("passwd: %d", st)
	}
	resp, ans = postForm(t, inst, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "service": {token.RegistryService}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("refresh after passwd: %d, want 401 (revoked)", resp.StatusCode)
	}
	resp, _ = getToken(t, inst, "admin", "a-brand-new-password", url.Values{"service": {token.RegistryService}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login with the new password: %d", resp.StatusCode)
	}
}

func TestRepeatedFailuresAreThrottled(t *testing.T) {
	inst := servertest.Start(t, func(c *config.Server) { c.LoginFailureLimit = 3 })
	q := url.Values{"service": {token.RegistryService}}
	for i := 0; i < 3; i++ {
		resp, _ := getToken(t, inst, "admin", "nope-"+string(rune('a'+i)), q)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	resp, ans := getToken(t, inst, "admin", inst.AdminPassword, q)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after 3 failures: %d (Retry-After %q), want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if len(ans.Errors) != 1 || ans.Errors[0].Code != "TOOMANYREQUESTS" {
		t.Fatalf("429 body %+v", ans)
	}
	// Another name from the same address is throttled too (per-address limit).
	resp, _ = getToken(t, inst, "someone-else", "x", q)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("same address, other name: %d, want 429", resp.StatusCode)
	}
}

// adminToken gets a management token for admin.
func adminToken(t *testing.T, inst *servertest.Instance) string {
	t.Helper()
	resp, ans := postForm(t, inst, "/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"admin"},
		"password": {inst.AdminPassword}, "service": {token.AudienceManagement}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin management token: %d %+v", resp.StatusCode, ans)
	}
	return ans.AccessToken
}

func TestGrantIsExactlyWhatAccessAllows(t *testing.T) {
	inst := servertest.Start(t, nil)
	ctx := context.Background()
	ids := inst.Server.Identities()
	if _, err := ids.CreateUser(ctx, "dev", "dev-password-1"); err != nil {
		t.Fatal(err)
	}
	body := `{"role":"AcrPull","assignee":"dev","scope":"/registry/repositories/app"}`
	req, _ := http.NewRequest(http.MethodPost, inst.URL+"/coffer/v1/role-assignments", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken(t, inst))
	req.Header.Set("Content-Type", "application/json")
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("assign AcrPull: %d", resp.StatusCode)
	}
	q := url.Values{"service": {token.RegistryService}, "scope": {"repository:app:pull,push,delete", "repository:other:pull", "registry:catalog:*"}}
	resp, ans := getToken(t, inst, "dev", "dev-password-1", q)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("dev token: %d %+v", resp.StatusCode, ans)
	}
	c := verify(t, inst, ans.Token, token.RegistryService)
	if len(c.Access) != 1 || c.Access[0].Name != "app" || strings.Join(c.Access[0].Actions, ",") != "pull" {
		t.Fatalf("dev's grant %+v, want exactly pull on app", c.Access)
	}

	// A repository token authenticates with HTTP Basic; with no scope map it gets nothing.
	_, pw, err := ids.CreateRepositoryToken(ctx, "ci")
	if err != nil {
		t.Fatal(err)
	}
	resp, ans = getToken(t, inst, "ci", pw, q)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("repository token login: %d %+v", resp.StatusCode, ans)
	}
	if c := verify(t, inst, ans.Token, token.RegistryService); c.Kind != "repositoryToken" || len(c.Access) != 0 {
		t.Fatalf("repository token claims %+v", c)
	}
	resp, _ = getToken(t, inst, "ci", pw+"x", q)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("repository token with a wrong password: %d", resp.StatusCode)
	}
	// It is a registry credential only: no management or vault tokens.
	for _, svc := range []string{token.AudienceManagement, token.VaultResource(inst.Config.Vault.Domain)} {
		if resp, _ = getToken(t, inst, "ci", pw, url.Values{"service": {svc}}); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("repository token asked for %s: %d, want 401", svc, resp.StatusCode)
		}
	}
}

func TestRestartKeepsStateAndAdmin(t *testing.T) {
	inst := servertest.Start(t, nil)
	ctx := context.Background()
	tenant := inst.Server.Identities().TenantID()
	system := inst.Server.Identities().SystemIdentity()
	_, ans := getToken(t, inst, "admin", inst.AdminPassword, url.Values{"service": {token.RegistryService}})
	info, err := os.Stat(filepath.Join(inst.DataDir, "initial-admin-password"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("initial-admin-password: %v mode %v", err, info.Mode())
	}
	cfg := inst.Config
	inst.Stop()

	again, err := servertest.StartConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Stop()
	ids := again.Server.Identities()
	if ids.TenantID() != tenant || ids.SystemIdentity() != system {
		t.Fatal("restart changed the tenant or the system identity")
	}
	if again.AdminPassword != inst.AdminPassword {
		t.Fatal("restart rewrote the initial admin password")
	}
	users, err := ids.List(ctx, "user")
	if err != nil || len(users) != 1 {
		t.Fatalf("users after restart: %+v %v", users, err)
	}
	if _, err := ids.Authenticate(ctx, "admin", inst.AdminPassword); err != nil {
		t.Fatalf("admin password after restart: %v", err)
	}
	// Tokens signed before the restart still verify (the signing key is kept).
	if _, err := again.Server.TokenVerifier().Verify(ctx, ans.Token, token.RegistryService); err != nil {
		t.Fatalf("pre-restart token: %v", err)
	}
}

func TestOAuth2FormsAndErrors(t *testing.T) {
	inst := servertest.Start(t, nil)
	ctx := context.Background()
	sp, secret, err := inst.Server.Identities().CreateServicePrincipal(ctx, "app", 0)
	if err != nil {
		t.Fatal(err)
	}

	// docker login: GET with offline_token=true returns a refresh token.
	resp, ans := getToken(t, inst, "admin", inst.AdminPassword, url.Values{"service": {token.RegistryService}, "offline_token": {"true"}, "client_id": {"docker"}})
	if resp.StatusCode != http.StatusOK || ans.RefreshToken == "" {
		t.Fatalf("offline_token: %d %+v", resp.StatusCode, ans)
	}

	// Client credentials in the form and with HTTP Basic.
	resp, ans = postForm(t, inst, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {sp.ClientID},
		"client_secret": {secret.Value}, "scope": {token.AudienceManagement + "/.default"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("client credentials: %d %+v", resp.StatusCode, ans)
	}
	if c := verify(t, inst, ans.AccessToken, token.AudienceManagement); c.AppID != sp.ClientID || c.Kind != "servicePrincipal" {
		t.Fatalf("claims %+v", c)
	}
	req, _ := http.NewRequest(http.MethodPost, inst.URL+"/oauth2/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"},
		"scope": {token.VaultResource(inst.Config.Vault.Domain) + "/.default"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(sp.ClientID, secret.Value)
	if resp, ans = do(t, inst, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("client_secret_basic: %d %+v", resp.StatusCode, ans)
	}

	// Docker style: service= and registry scopes.
	resp, ans = postForm(t, inst, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {sp.ClientID},
		"client_secret": {secret.Value}, "service": {token.RegistryService}, "scope": {"repository:app:pull"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("client credentials for the registry: %d %+v", resp.StatusCode, ans)
	}
	if c := verify(t, inst, ans.AccessToken, token.RegistryService); len(c.Access) != 0 {
		t.Fatalf("a service principal without a role was granted %+v", c.Access)
	}

	cases := []struct {
		name   string
		form   url.Values
		status int
		code   string
	}{
		{"wrong secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {sp.ClientID}, "client_secret": {"nope"}, "scope": {"coffer-management/.default"}}, 401, "invalid_client"},
		{"unknown resource", url.Values{"grant_type": {"client_credentials"}, "client_id": {sp.ClientID}, "client_secret": {secret.Value}, "scope": {"https://elsewhere/.default"}}, 401, "invalid_scope"},
		{"two resources", url.Values{"grant_type": {"client_credentials"}, "client_id": {sp.ClientID}, "client_secret": {secret.Value}, "scope": {"coffer-management/.default coffer-registry/.default"}}, 401, "invalid_scope"},
		{"unsupported grant", url.Values{"grant_type": {"authorization_code"}}, 400, "unsupported_grant_type"},
		{"no grant", url.Values{}, 400, "invalid_request"},
		{"wrong password", url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {"nope"}, "service": {token.RegistryService}}, 401, "invalid_grant"},
		{"bad scope", url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {inst.AdminPassword}, "scope": {"repository::pull"}}, 401, "invalid_scope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, ans := postForm(t, inst, "/oauth2/token", tc.form)
			if resp.StatusCode != tc.status || ans.Error != tc.code {
				t.Fatalf("%d %q, want %d %q", resp.StatusCode, ans.Error, tc.status, tc.code)
			}
			if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without a challenge")
			}
		})
	}

	// JWKS and discovery.
	r2, err := inst.Client.Get(inst.URL + "/" + inst.Server.Identities().TenantID() + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var disc map[string]any
	json.NewDecoder(r2.Body).Decode(&disc)
	r2.Body.Close()
	if disc["jwks_uri"] != inst.URL+"/oauth2/keys" || !strings.HasSuffix(disc["token_endpoint"].(string), "/oauth2/v2.0/token") {
		t.Fatalf("discovery %v", disc)
	}
	r3, err := inst.Client.Get(inst.URL + "/oauth2/keys")
	if err != nil {
		t.Fatal(err)
	}
	var jwks struct {
		Keys []struct{ KID, Kty, Crv string } `json:"keys"`
	}
	json.NewDecoder(r3.Body).Decode(&jwks)
	r3.Body.Close()
	if len(jwks.Keys) != 1 || jwks.Keys[0].Kty != "EC" || jwks.Keys[0].KID == "" {
		t.Fatalf("jwks %+v", jwks)
	}
}
