package trustapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/servertest"
)

type env struct {
	inst *servertest.Instance
	// host is the registry host docker and notary name GUNs with (127.0.0.1:PORT).
	host string
	mgmt string
}

// start runs a server with content trust enabled and the administrator made a signer.
func start(t testing.TB, mutate func(*config.Server)) *env {
	t.Helper()
	inst := servertest.Start(t, mutate)
	e := &env{inst: inst, host: inst.Addr}
	e.mgmt = e.mgmtToken(t, "admin", inst.AdminPassword)
	e.setTrust(t, "enabled")
	e.assign(t, "AcrImageSigner", "admin", "/registry")
	return e
}

func (e *env) mgmtToken(t testing.TB, user, pass string) string {
	t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}, "service": {"coffer-management"}}
	resp, err := e.inst.Client.PostForm(e.inst.URL+"/oauth2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("management token: %d %s", resp.StatusCode, body)
	}
	json.Unmarshal(body, &tr)
	return tr.AccessToken
}

func (e *env) call(t testing.TB, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.inst.URL+path, body)
	req.Header.Set("Authorization", "Bearer "+e.mgmt)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v (%s)", method, path, err, raw)
		}
	}
	return resp.StatusCode
}

func (e *env) setTrust(t testing.TB, status string) wire.ContentTrustUpdated {
	t.Helper()
	var out wire.ContentTrustUpdated
	if code := e.call(t, "PATCH", "/coffer/v1/registry/config/content-trust", wire.ContentTrustUpdate{Status: status}, &out); code != 200 {
		t.Fatalf("set content trust %s: %d", status, code)
	}
	return out
}

func (e *env) assign(t testing.TB, role, who, scope string) {
	t.Helper()
	if code := e.call(t, "POST", "/coffer/v1/role-assignments", wire.CreateRoleAssignmentRequest{Role: role, Assignee: who, Scope: scope}, nil); code != 201 && code != 200 {
		t.Fatalf("assign %s to %s at %s: %d", role, who, scope, code)
	}
}

func (e *env) user(t testing.TB, name, pass string, roles ...string) {
	t.Helper()
	if code := e.call(t, "POST", "/coffer/v1/users", wire.CreateUserRequest{Name: name, Password: pass}, nil); code != 201 {
		t.Fatalf("create user %s: %d", name, code)
	}
	for _, r := range roles {
		e.assign(t, r, name, "/registry")
	}
}

func (e *env) gun(repo string) string { return fmt.Sprintf("%s/%s", e.host, repo) }
