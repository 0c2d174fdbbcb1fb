package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestAuthorizationTable checks, for each role and a repository-scoped token, every
// registry endpoint (and the registry's management endpoints) allowed or denied as
// documented in docs/registry.md. Principals get their roles through the management API;
// registry tokens come from the real Docker token flow, which grants the intersection of
// the requested scope and the principal's roles.
func TestAuthorizationTable(t *testing.T) {
	e := startEnv(t, nil)
	const repo = "authz/app"
	adminMgmt, err := e.managementToken(t, "admin", e.inst.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	repoScope := "/registry/repositories/" + repo
	type principal struct {
		name, role, scope string
		repoToken         bool
	}
	principals := []principal{
		{name: "puller", role: "AcrPull", scope: repoScope},
		{name: "pusher", role: "AcrPush", scope: repoScope},
		{name: "deleter", role: "AcrDelete", scope: repoScope},
		{name: "owner", role: "Owner", scope: repoScope},
		{name: "reader", role: "Reader", scope: repoScope},
		{name: "registrypuller", role: "AcrPull", scope: "/registry"},
		{name: "nobody"},
		{name: "citoken", repoToken: true},
	}
	passwords := map[string]string{}
	for _, p := range principals {
		if p.repoToken {
			var out struct {
				Password string `json:"password"`
			}
			st := e.mgmtCall(t, adminMgmt, "POST", "/coffer/v1/tokens", map[string]any{"name": p.name,
				"scopeMap": []map[string]any{{"repository": repo, "actions": []string{"content/read", "content/write"}}}}, &out)
			if st != http.StatusCreated {
				t.Fatalf("create repository token: %d", st)
			}
			passwords[p.name] = out.Password
			continue
		}
		pw := "Pw-" + p.name + "-0123456789"
		if st := e.mgmtCall(t, adminMgmt, "POST", "/coffer/v1/users", map[string]string{"name": p.name, "password": pw}, nil); st >= 300 {
			t.Fatalf("create user %s: %d", p.name, st)
		}
		passwords[p.name] = pw
		if p.role != "" {
			if st := e.mgmtCall(t, adminMgmt, "POST", "/coffer/v1/role-assignments",
				map[string]string{"role": p.role, "assignee": p.name, "scope": p.scope}, nil); st >= 300 {
				t.Fatalf("assign %s to %s: %d", p.role, p.name, st)
			}
		}
	}

	// Content the table reads and deletes, pushed by the administrator.
	admin := e.adminToken(t, "repository:"+repo+":pull,push,delete")
	do := func(tok, method, path string, body []byte, hdr map[string]string) (int, []byte) {
		req, _ := http.NewRequest(method, e.inst.URL+path, bytes.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := e.inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	pushBlob := func(tok string, content []byte) int {
		st, _ := do(tok, "POST", "/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(content).String(), content, nil)
		return st
	}
	cfg := []byte(`{"authz":true}`)
	pushBlob(admin, cfg)
	manifest := func(tag string) []byte {
		m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
			"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest.FromBytes(cfg), "size": len(cfg)},
			"layers": []any{}, "annotations": map[string]string{"tag": tag}})
		return m
	}
	putManifest := func(tok, tag string) int {
		st, _ := do(tok, "PUT", "/v2/"+repo+"/manifests/"+tag, manifest(tag), map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
		return st
	}
	if st := putManifest(admin, "base"); st != 201 {
		t.Fatalf("admin push: %d", st)
	}

	type endpoint struct {
		name string
		// call returns the status; setup (as admin) runs first when set.
		call func(tok, who string) int
		ok   int
	}
	endpoints := []endpoint{
		{"GET manifest", func(tok, _ string) int { st, _ := do(tok, "GET", "/v2/"+repo+"/manifests/base", nil, nil); return st }, 200},
		{"HEAD blob", func(tok, _ string) int {
			st, _ := do(tok, "HEAD", "/v2/"+repo+"/blobs/"+digest.FromBytes(cfg).String(), nil, nil)
			return st
		}, 200},
		{"GET tags", func(tok, _ string) int { st, _ := do(tok, "GET", "/v2/"+repo+"/tags/list", nil, nil); return st }, 200},
		{"GET referrers", func(tok, _ string) int {
			st, _ := do(tok, "GET", "/v2/"+repo+"/referrers/"+digest.FromBytes(manifest("base")).String(), nil, nil)
			return st
		}, 200},
		{"POST blob", func(tok, who string) int { return pushBlob(tok, []byte("blob of "+who)) }, 201},
		{"PUT manifest", func(tok, who string) int { return putManifest(tok, "by-"+who) }, 201},
		{"DELETE tag", func(tok, who string) int {
			putManifest(admin, "del-"+who)
			st, _ := do(tok, "DELETE", "/v2/"+repo+"/manifests/del-"+who, nil, nil)
			return st
		}, 202},
		{"GET catalog", func(tok, _ string) int { st, _ := do(tok, "GET", "/v2/_catalog", nil, nil); return st }, 200},
		{"HEAD manifest", func(tok, _ string) int { st, _ := do(tok, "HEAD", "/v2/"+repo+"/manifests/base", nil, nil); return st }, 200},
		{"GET blob", func(tok, _ string) int {
			st, _ := do(tok, "GET", "/v2/"+repo+"/blobs/"+digest.FromBytes(cfg).String(), nil, nil)
			return st
		}, 200},
		{"POST upload session", func(tok, _ string) int { st, _ := do(tok, "POST", "/v2/"+repo+"/blobs/uploads/", nil, nil); return st }, 202},
		{"DELETE manifest", func(tok, who string) int {
			m := manifest("digest-" + who)
			do(admin, "PUT", "/v2/"+repo+"/manifests/"+digest.FromBytes(m).String(), m, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
			st, _ := do(tok, "DELETE", "/v2/"+repo+"/manifests/"+digest.FromBytes(m).String(), nil, nil)
			return st
		}, 202},
		{"DELETE blob", func(tok, who string) int {
			b := []byte("to delete " + who)
			pushBlob(admin, b)
			st, _ := do(tok, "DELETE", "/v2/"+repo+"/blobs/"+digest.FromBytes(b).String(), nil, nil)
			return st
		}, 202},
	}
	// Expected: Y allowed, N denied, per endpoint in the order above.
	table := map[string]string{
		"puller":         "YYYYNNNN" + "YYNNN",
		"pusher":         "YYYYYYNN" + "YYYNN",
		"deleter":        "NNNNNNYN" + "NNNYY",
		"owner":          "YYYYYYYN" + "YYYYY",
		"reader":         "YYYYNNNN" + "YYNNN",
		"registrypuller": "YYYYNNNY" + "YYNNN",
		"nobody":         "NNNNNNNN" + "NNNNN",
		"citoken":        "YYYYYYNN" + "YYYNN",
	}
	for _, p := range principals {
		tok, err := e.registryToken(t, p.name, passwords[p.name], "repository:"+repo+":pull,push,delete", "registry:catalog:*")
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		var got strings.Builder
		for i, ep := range endpoints {
			st := ep.call(tok, p.name)
			want := table[p.name][i] == 'Y'
			switch {
			case st == ep.ok:
				got.WriteByte('Y')
			case st == http.StatusUnauthorized || st == http.StatusForbidden:
				got.WriteByte('N')
			default:
				t.Errorf("%s %s: unexpected status %d", p.name, ep.name, st)
				got.WriteByte('?')
			}
			if (st == ep.ok) != want {
				t.Errorf("%s: %s answered %d, want allowed=%v", p.name, ep.name, st, want)
			}
		}
		t.Logf("%-15s %s", p.name, got.String())
	}

	// Management endpoints: show (pull), delete tag (delete), gc (registry/manage at
	// /registry), list repositories (registry/list at /registry).
	mgmtTable := map[string]string{
		"puller": "YNNN", "pusher": "YNNN", "deleter": "NYNN", "owner": "YYNN", "reader": "YNNN",
		"registrypuller": "YNNY", "nobody": "NNNN",
	}
	for _, p := range principals {
		if p.repoToken {
			continue // repository tokens are for the registry API only
		}
		tok, err := e.managementToken(t, p.name, passwords[p.name])
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		putManifest(admin, "mdel-"+p.name)
		calls := []func() int{
			func() int { return e.mgmtCall(t, tok, "GET", "/coffer/v1/registry/repositories/"+repo, nil, nil) },
			func() int {
				return e.mgmtCall(t, tok, "DELETE", "/coffer/v1/registry/tags?repository="+repo+"&tag=mdel-"+p.name, nil, nil)
			},
			func() int { return e.mgmtCall(t, tok, "POST", "/coffer/v1/registry/gc?dryRun=true", nil, nil) },
			func() int { return e.mgmtCall(t, tok, "GET", "/coffer/v1/registry/repositories", nil, nil) },
		}
		for i, call := range calls {
			st := call()
			want := mgmtTable[p.name][i] == 'Y'
			if (st < 300) != want {
				t.Errorf("%s: management call %d answered %d, want allowed=%v", p.name, i, st, want)
			}
			if st >= 300 && st != http.StatusForbidden {
				t.Errorf("%s: management call %d: refusal %d, want 403", p.name, i, st)
			}
		}
	}
	// The administrator (Owner at /) may collect garbage.
	if st := e.mgmtCall(t, adminMgmt, "POST", "/coffer/v1/registry/gc?dryRun=true", nil, nil); st != 200 {
		t.Fatalf("admin gc: %d", st)
	}
}

// TestMountAuthorization: a mount (named source or automatic) needs pull on the source,
// from the token or from the principal's roles; otherwise it falls back to an upload.
func TestMountAuthorization(t *testing.T) {
	e := startEnv(t, nil)
	adminMgmt, err := e.managementToken(t, "admin", e.inst.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("a layer of the private repository")
	d := digest.FromBytes(secret)
	admin := e.adminToken(t, "repository:private/app:pull,push")
	req, _ := http.NewRequest("POST", e.inst.URL+"/v2/private/app/blobs/uploads/?digest="+d.String(), bytes.NewReader(secret))
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := e.inst.Client.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("seed blob: %v %v", err, resp)
	}
	resp.Body.Close()
	users := map[string][]string{ // user → roles as role@scope
		"reader-too": {"AcrPush@/registry/repositories/mine/app", "AcrPull@/registry/repositories/private/app"},
		"outsider":   {"AcrPush@/registry/repositories/mine/app"},
	}
	for u, roles := range users {
		if st := e.mgmtCall(t, adminMgmt, "POST", "/coffer/v1/users", map[string]string{"name": u, "password": "Pw-" + u + "-0123456789"}, nil); st >= 300 {
			t.Fatalf("create %s: %d", u, st)
		}
		for _, rs := range roles {
			role, scope, _ := strings.Cut(rs, "@")
			if st := e.mgmtCall(t, adminMgmt, "POST", "/coffer/v1/role-assignments", map[string]string{"role": role, "assignee": u, "scope": scope}, nil); st >= 300 {
				t.Fatalf("assign %s: %d", rs, st)
			}
		}
	}
	mount := func(user, query string) int {
		tok, err := e.registryToken(t, user, "Pw-"+user+"-0123456789", "repository:mine/app:pull,push")
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", e.inst.URL+"/v2/mine/app/blobs/uploads/?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := e.inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	cases := []struct {
		user, query string
		want        int
	}{
		{"outsider", "mount=" + d.String() + "&from=private/app", 202},
		{"outsider", "mount=" + d.String(), 202},
		{"reader-too", "mount=" + d.String() + "&from=private/app", 201},
		{"reader-too", "mount=" + d.String(), 201},
	}
	for _, c := range cases {
		if got := mount(c.user, c.query); got != c.want {
			t.Errorf("%s mounts with %s: %d, want %d", c.user, c.query, got, c.want)
		}
	}
}
