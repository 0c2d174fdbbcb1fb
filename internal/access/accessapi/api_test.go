package accessapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/access/accessapi"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/token"
)

type client struct {
	t     *testing.T
	inst  *servertest.Instance
	token string
}

func login(t *testing.T, inst *servertest.Instance, user, password string) *client {
	t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}, "service": {token.AudienceManagement}}
	resp, err := inst.Client.PostForm(inst.URL+"/oauth2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" {
		t.Fatalf("log in as %s: %d %s", user, resp.StatusCode, body)
	}
	return &client{t: t, inst: inst, token: tr.AccessToken}
}

// call sends a request and decodes the answer into out; it returns the status and the
// raw body.
func (c *client) call(method, path string, in, out any) (int, []byte) {
	c.t.Helper()
	var body io.Reader
	if in != nil {
		raw, _ := json.Marshal(in)
		body = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, c.inst.URL+path, body)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.inst.Client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}

func (c *client) must(method, path string, in, out any, want int) {
	c.t.Helper()
	if status, raw := c.call(method, path, in, out); status != want {
		c.t.Fatalf("%s %s = %d %s, want %d", method, path, status, raw, want)
	}
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func expectError(t *testing.T, status int, raw []byte, wantStatus int, wantCode string) apiError {
	t.Helper()
	var e apiError
	if status != wantStatus || json.Unmarshal(raw, &e) != nil || e.Error.Code != wantCode || e.Error.Message == "" {
		t.Fatalf("got %d %s, want %d with code %s", status, raw, wantStatus, wantCode)
	}
	return e
}

func TestManagementAPI(t *testing.T) {
	inst := servertest.Start(t, nil)
	admin := login(t, inst, "admin", inst.AdminPassword)

	// The administrator is Owner at /.
	var asgs struct{ Value []access.Assignment }
	admin.must("GET", "/coffer/v1/role-assignments?assignee=admin", nil, &asgs, http.StatusOK)
	if len(asgs.Value) != 1 || asgs.Value[0].Role != "Owner" || asgs.Value[0].Scope != "/" {
		t.Fatalf("admin's assignments: %+v", asgs.Value)
	}

	var defs struct {
		Value []struct {
			Name             string          `json:"name"`
			EffectiveActions []access.Action `json:"effectiveActions"`
		}
	}
	admin.must("GET", "/coffer/v1/role-definitions", nil, &defs, http.StatusOK)
	if len(defs.Value) != 12 {
		t.Fatalf("%d role definitions, want 12", len(defs.Value))
	}

	// A new user with AcrPull only.
	admin.must("POST", "/coffer/v1/users", map[string]string{"name": "dev", "password": "dev-password-1"}, nil, http.StatusCreated)
	var created access.Assignment
	admin.must("POST", "/coffer/v1/role-assignments", map[string]string{"role": "acrpull", "assignee": "dev", "scope": "repository/app"}, &created, http.StatusCreated)
	if created.Role != "AcrPull" || created.Scope != "/registry/repositories/app" || created.PrincipalName != "dev" {
		t.Fatalf("created %+v", created)
	}
	// The same triple again is the same assignment.
	var again access.Assignment
	admin.must("POST", "/coffer/v1/role-assignments", map[string]string{"role": "AcrPull", "assignee": created.PrincipalID, "scope": "/registry/repositories/app"}, &again, http.StatusOK)
	if again.ID != created.ID {
		t.Fatalf("idempotent create gave %s, want %s", again.ID, created.ID)
	}

	dev := login(t, inst, "dev", "dev-password-1")
	status, raw := dev.call("POST", "/coffer/v1/role-assignments", map[string]string{"role": "Owner", "assignee": "dev", "scope": "/"}, nil)
	e := expectError(t, status, raw, http.StatusForbidden, "Forbidden")
	if !strings.Contains(e.Error.Message, "access/manage") {
		t.Errorf("403 message does not name the action: %s", e.Error.Message)
	}
	// dev sees its own assignment but not admin's.
	dev.must("GET", "/coffer/v1/role-assignments", nil, &asgs, http.StatusOK)
	if len(asgs.Value) != 1 || asgs.Value[0].ID != created.ID {
		t.Fatalf("dev lists %+v", asgs.Value)
	}
	status, raw = dev.call("DELETE", "/coffer/v1/role-assignments/"+created.ID, nil, nil)
	expectError(t, status, raw, http.StatusForbidden, "Forbidden")
	status, raw = dev.call("POST", "/coffer/v1/tokens", map[string]any{"name": "x", "scopeMap": []map[string]any{{"repository": "app", "actions": []string{"content/read"}}}}, nil)
	expectError(t, status, raw, http.StatusForbidden, "Forbidden")
	status, raw = dev.call("PUT", "/coffer/v1/vaults/team1/access-policies/dev", map[string]any{"keyPermissions": []string{"get"}}, nil)
	expectError(t, status, raw, http.StatusForbidden, "Forbidden")

	// Bad input is 400 with a message that helps.
	status, raw = admin.call("POST", "/coffer/v1/role-assignments", map[string]string{"role": "AcrPul", "assignee": "dev", "scope": "/"}, nil)
	if e := expectError(t, status, raw, http.StatusBadRequest, "BadParameter"); !strings.Contains(e.Error.Message, "AcrPul") {
		t.Errorf("unknown role message: %s", e.Error.Message)
	}
	status, raw = admin.call("POST", "/coffer/v1/role-assignments", map[string]string{"role": "AcrPull", "assignee": "dev", "scope": "/vault/x"}, nil)
	expectError(t, status, raw, http.StatusBadRequest, "BadParameter")
	status, raw = admin.call("POST", "/coffer/v1/role-assignments", map[string]string{"role": "AcrPull", "assignee": "nobody", "scope": "/"}, nil)
	expectError(t, status, raw, http.StatusBadRequest, "BadParameter")

	// Owner on one vault may manage assignments there, and only there.
	admin.must("POST", "/coffer/v1/role-assignments", map[string]string{"role": "Owner", "assignee": "dev", "scope": "vault/team1"}, nil, http.StatusCreated)
	dev.must("POST", "/coffer/v1/role-assignments", map[string]string{"role": "Key Vault Reader", "assignee": "dev", "scope": "/vaults/team1/keys/k1"}, nil, http.StatusCreated)
	status, raw = dev.call("POST", "/coffer/v1/role-assignments", map[string]string{"role": "Key Vault Reader", "assignee": "dev", "scope": "/vaults/team2"}, nil)
	expectError(t, status, raw, http.StatusForbidden, "Forbidden")

	// Access policies: refused on a vault that does not exist, then set on a new one.
	status, raw = admin.call("PUT", "/coffer/v1/vaults/nosuch/access-policies/dev", map[string]any{"keyPermissions": []string{"get"}}, nil)
	expectError(t, status, raw, http.StatusNotFound, "NotFound")
	admin.must("POST", "/coffer/v1/vaults", map[string]any{"name": "team1"}, nil, http.StatusCreated)
	status, raw = admin.call("GET", "/coffer/v1/vaults/nosuch/access-policies", nil, nil)
	expectError(t, status, raw, http.StatusNotFound, "NotFound")
	var pol access.AccessPolicy
	dev.must("PUT", "/coffer/v1/vaults/team1/access-policies/dev", map[string]any{"keyPermissions": []string{"Get", "wrapkey", "UNWRAPKEY"}}, &pol, http.StatusOK)
	if strings.Join(pol.KeyPermissions, ",") != "get,wrapKey,unwrapKey" || pol.ObjectID != created.PrincipalID {
		t.Fatalf("policy %+v", pol)
	}
	status, raw = admin.call("PUT", "/coffer/v1/vaults/team1/access-policies/dev", map[string]any{"keyPermissions": []string{"get", "unwrap"}}, nil)
	if e := expectError(t, status, raw, http.StatusBadRequest, "BadParameter"); !strings.Contains(e.Error.Message, `"unwrap"`) {
		t.Errorf("bad permission message: %s", e.Error.Message)
	}
	var pols struct{ Value []access.AccessPolicy }
	admin.must("GET", "/coffer/v1/vaults/team1/access-policies", nil, &pols, http.StatusOK)
	if len(pols.Value) != 1 || pols.Value[0].ObjectID != created.PrincipalID {
		t.Fatalf("policies %+v", pols.Value)
	}
	admin.must("DELETE", "/coffer/v1/vaults/team1/access-policies/"+created.PrincipalID, nil, nil, http.StatusNoContent)
	status, raw = admin.call("DELETE", "/coffer/v1/vaults/team1/access-policies/"+created.PrincipalID, nil, nil)
	expectError(t, status, raw, http.StatusNotFound, "NotFound")

	// Repository tokens: the password works as a registry credential with exactly the
	// scope map's grants.
	var tok struct {
		access.RepositoryToken
		Password string `json:"password"`
	}
	admin.must("POST", "/coffer/v1/tokens", map[string]any{"name": "ci", "scopeMap": []map[string]any{{"repository": "app", "actions": []string{"content/read", "content/write"}}}}, &tok, http.StatusCreated)
	if tok.Password == "" || tok.ObjectID == "" {
		t.Fatalf("token %+v", tok)
	}
	req, _ := http.NewRequest("GET", inst.URL+"/oauth2/token?service="+token.RegistryService+"&scope=repository:app:pull,push,delete&scope=repository:other:pull", nil)
	req.SetBasicAuth("ci", tok.Password)
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("registry token for the repository token: %d %s", resp.StatusCode, body)
	}
	var tokenResp struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &tokenResp); err != nil {
		t.Fatal(err)
	}
	claims, err := inst.Server.TokenVerifier().Verify(t.Context(), tokenResp.Token, token.RegistryService)
	if err != nil {
		t.Fatal(err)
	}
	granted := map[string]string{}
	for _, a := range claims.Access {
		granted[a.Name] = strings.Join(a.Actions, ",")
	}
	if granted["app"] != "pull,push" || granted["other"] != "" {
		t.Fatalf("registry token grants %v, want app:pull,push only", claims.Access)
	}
	var toks struct{ Value []access.RepositoryToken }
	admin.must("GET", "/coffer/v1/tokens", nil, &toks, http.StatusOK)
	if len(toks.Value) != 1 || toks.Value[0].Name != "ci" {
		t.Fatalf("tokens %+v", toks.Value)
	}
	if strings.Contains(string(mustJSON(toks)), tok.Password) {
		t.Fatal("token list shows the password")
	}
	admin.must("DELETE", "/coffer/v1/tokens/ci", nil, nil, http.StatusNoContent)
	req, _ = http.NewRequest("GET", inst.URL+"/oauth2/token?service="+token.RegistryService+"&scope=repository:app:pull", nil)
	req.SetBasicAuth("ci", tok.Password)
	resp, err = inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("deleted token still gets a registry token: %d", resp.StatusCode)
	}

	// Deleting the assignment revokes at once.
	admin.must("DELETE", "/coffer/v1/role-assignments/"+created.ID, nil, nil, http.StatusNoContent)
	status, raw = admin.call("DELETE", "/coffer/v1/role-assignments/"+created.ID, nil, nil)
	expectError(t, status, raw, http.StatusNotFound, "NotFound")

	// Every change, and every refused attempt, is in the audit trail.
	al := inst.Server.Audit()
	if err := al.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	recs, err := al.List(t.Context(), audit.Filter{Component: "access"})
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for _, r := range recs {
		if r.Operation == accessapi.OpRoleAssignmentCreate || r.Operation == accessapi.OpRoleAssignmentDelete {
			trail = append(trail, r.Operation+":"+r.Result+":"+r.PrincipalName+":"+r.Resource)
		}
	}
	wantTrail := "RoleAssignmentCreate:success:admin:registry/repositories/app RoleAssignmentCreate:denied:dev: " +
		"RoleAssignmentDelete:denied:dev:registry/repositories/app RoleAssignmentCreate:failure:admin: " +
		"RoleAssignmentCreate:failure:admin: RoleAssignmentCreate:success:admin:vaults/team1 " +
		"RoleAssignmentCreate:success:dev:vaults/team1/keys/k1 RoleAssignmentCreate:denied:dev:vaults/team2 " +
		"RoleAssignmentDelete:success:admin:registry/repositories/app"
	if got := strings.Join(trail, " "); got != wantTrail {
		t.Errorf("audit trail of role assignments:\n got %s\nwant %s", got, wantTrail)
	}
	for _, r := range recs {
		if r.Result == audit.ResultDenied && !strings.Contains(r.Detail, "access/manage") {
			t.Errorf("denied record without the reason: %+v", r)
		}
	}
	recs, err = al.List(t.Context(), audit.Filter{Component: "access", Operation: accessapi.OpRepositoryTokenCreate})
	if err != nil || len(recs) != 2 || recs[0].Result != audit.ResultDenied || recs[1].Result != audit.ResultSuccess || !strings.Contains(recs[1].Target, "ci") {
		t.Errorf("repository token audit records: %+v, %v", recs, err)
	}

	// Deleting a principal removes its role assignments with it.
	admin.must("POST", "/coffer/v1/managedIdentities", map[string]string{"name": "gone"}, nil, http.StatusCreated)
	var goneAsg access.Assignment
	admin.must("POST", "/coffer/v1/role-assignments", map[string]string{"role": "AcrPull", "assignee": "gone", "scope": "registry"}, &goneAsg, http.StatusCreated)
	admin.must("DELETE", "/coffer/v1/managedIdentities/gone", nil, nil, http.StatusNoContent)
	admin.must("GET", "/coffer/v1/role-assignments?assignee="+goneAsg.PrincipalID, nil, &asgs, http.StatusOK)
	if len(asgs.Value) != 0 {
		t.Fatalf("assignments of a deleted principal remain: %+v", asgs.Value)
	}
	status, raw = admin.call("GET", "/coffer/v1/role-assignments?assignee=gone", nil, nil)
	expectError(t, status, raw, http.StatusBadRequest, "BadParameter")

	// No token: 401.
	anon := &client{t: t, inst: inst}
	status, raw = anon.call("GET", "/coffer/v1/role-assignments", nil, nil)
	expectError(t, status, raw, http.StatusUnauthorized, "Unauthorized")
}

func mustJSON(v any) []byte {
	raw, _ := json.Marshal(v)
	return raw
}

// TestRestartKeepsGrants: assignments, policies and repository tokens survive a restart,
// and the administrator is not granted Owner again.
func TestRestartKeepsGrants(t *testing.T) {
	inst := servertest.Start(t, nil)
	admin := login(t, inst, "admin", inst.AdminPassword)
	admin.must("POST", "/coffer/v1/managedIdentities", map[string]string{"name": "kek"}, nil, http.StatusCreated)
	admin.must("POST", "/coffer/v1/vaults", map[string]any{"name": "team1"}, nil, http.StatusCreated)
	admin.must("POST", "/coffer/v1/role-assignments", map[string]string{"role": "Key Vault Crypto User", "assignee": "kek", "scope": "vault/team1"}, nil, http.StatusCreated)
	admin.must("PUT", "/coffer/v1/vaults/team1/access-policies/kek", map[string]any{"keyPermissions": []string{"get", "unwrapKey"}}, nil, http.StatusOK)
	admin.must("POST", "/coffer/v1/tokens", map[string]any{"name": "ci", "scopeMap": []map[string]any{{"repository": "app", "actions": []string{"content/read"}}}}, nil, http.StatusCreated)
	dataDir, password := inst.DataDir, inst.AdminPassword
	inst.Stop()

	inst = servertest.Start(t, func(c *config.Server) { c.DataDir = dataDir })
	admin = login(t, inst, "admin", password)
	var asgs struct{ Value []access.Assignment }
	admin.must("GET", "/coffer/v1/role-assignments", nil, &asgs, http.StatusOK)
	var got []string
	for _, a := range asgs.Value {
		got = append(got, a.Role+"@"+string(a.Scope)+"@"+a.PrincipalName)
	}
	if strings.Join(got, " ") != "Owner@/@admin Key Vault Crypto User@/vaults/team1@kek" {
		t.Fatalf("assignments after restart: %v", got)
	}
	var pols struct{ Value []access.AccessPolicy }
	admin.must("GET", "/coffer/v1/vaults/team1/access-policies", nil, &pols, http.StatusOK)
	if len(pols.Value) != 1 || strings.Join(pols.Value[0].KeyPermissions, ",") != "get,unwrapKey" {
		t.Fatalf("policies after restart: %+v", pols.Value)
	}
	var toks struct{ Value []access.RepositoryToken }
	admin.must("GET", "/coffer/v1/tokens", nil, &toks, http.StatusOK)
	if len(toks.Value) != 1 || toks.Value[0].Name != "ci" {
		t.Fatalf("tokens after restart: %+v", toks.Value)
	}
}
