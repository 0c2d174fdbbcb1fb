package tokenapi_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/token"
)

// The token endpoint refuses repository names the registry refuses (upper case, over 255
// characters, a host:port prefix), saying why, instead of granting a useless token.
func TestTokenEndpointRefusesInvalidRepositoryNames(t *testing.T) {
	inst := servertest.Start(t, nil)
	long := strings.Repeat("a", 250) + "/bcdef"
	for _, name := range []string{"Team/App", "LOWKEY", long, "localhost:5000/team/app"} {
		scope := "repository:" + name + ":pull"
		resp, ans := getToken(t, inst, "admin", inst.AdminPassword, url.Values{"service": {token.RegistryService}, "scope": {scope}})
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("GET token for %q: 200, want a refusal", name)
		}
		if len(ans.Errors) != 1 || !strings.Contains(ans.Errors[0].Message, "repository name") {
			t.Fatalf("GET token for %q: %d %+v, want an error about the repository name", name, resp.StatusCode, ans.Errors)
		}
		resp, ans = postForm(t, inst, "/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"admin"},
			"password": {inst.AdminPassword}, "service": {token.RegistryService}, "scope": {scope}})
		if resp.StatusCode == http.StatusOK || ans.Error != "invalid_scope" {
			t.Fatalf("POST token for %q: %d %q, want invalid_scope", name, resp.StatusCode, ans.Error)
		}
	}
	// Valid names (255 characters included) still get tokens.
	ok := strings.Repeat("a", 249) + "/bcdef"
	for _, name := range []string{"team/app", ok} {
		if resp, ans := getToken(t, inst, "admin", inst.AdminPassword, url.Values{"service": {token.RegistryService}, "scope": {"repository:" + name + ":pull"}}); resp.StatusCode != http.StatusOK {
			t.Fatalf("token for %q: %d %+v", name, resp.StatusCode, ans.Errors)
		}
	}
}

// `*` follows Distribution: it is one action that a token holding it allows everything
// with, so it is granted only to a principal allowed pull, push and delete; a principal
// with pull and push gets nothing for `*` and gets pull,push when it asks for them by name.
func TestStarActionIsAllOrNothing(t *testing.T) {
	inst := servertest.Start(t, nil)
	ctx := context.Background()
	if _, err := inst.Server.Identities().CreateUser(ctx, "pusher", "pusher-password"); err != nil {
		t.Fatal(err)
	}
	assign(t, inst, `{"role":"AcrPush","assignee":"pusher","scope":"/registry/repositories/app"}`)
	grant := func(user, pass, scope string) string {
		_, ans := getToken(t, inst, user, pass, url.Values{"service": {token.RegistryService}, "scope": {scope}})
		c := verify(t, inst, ans.Token, token.RegistryService)
		var out []string
		for _, a := range c.Access {
			out = append(out, a.Name+":"+strings.Join(a.Actions, ","))
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct{ user, pass, scope, want string }{
		{"pusher", "pusher-password", "repository:app:*", ""},
		{"pusher", "pusher-password", "repository:app:pull,push,*", "app:pull,push"},
		{"pusher", "pusher-password", "repository:app:pull,push,delete", "app:pull,push"},
		{"admin", inst.AdminPassword, "repository:app:*", "app:*"},
	} {
		if got := grant(tc.user, tc.pass, tc.scope); got != tc.want {
			t.Errorf("%s asking %s: granted %q, want %q", tc.user, tc.scope, got, tc.want)
		}
	}
}

func assign(t *testing.T, inst *servertest.Instance, body string) {
	t.Helper()
	if code := call(t, inst, http.MethodPost, "/coffer/v1/role-assignments", adminToken(t, inst), body); code >= 300 {
		t.Fatalf("assign %s: %d", body, code)
	}
}

// call sends a management request with a bearer token and returns its status.
func call(t *testing.T, inst *servertest.Instance, method, path, bearer, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, inst.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bearer)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
