package trustapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/docker/distribution/registry/client/auth"
	"github.com/docker/distribution/registry/client/auth/challenge"
	"github.com/docker/distribution/registry/client/transport"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// catalogTransport asks the token endpoint for registry:catalog:* (the registry-wide
// changefeed's grant), as docker's token handler would.
func catalogTransport(t *testing.T, e *env, user, pass string) http.RoundTripper {
	t.Helper()
	base := e.inst.Client.Transport
	ping, err := (&http.Client{Transport: base}).Get(e.inst.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	ping.Body.Close()
	cm := challenge.NewSimpleManager()
	cm.AddResponse(ping)
	creds := dockerCreds{user, pass}
	th := auth.NewTokenHandlerWithOptions(auth.TokenHandlerOptions{Transport: base, Credentials: creds,
		Scopes: []auth.Scope{auth.RegistryScope{Name: "catalog", Actions: []string{"*"}}}})
	return transport.NewTransport(base, auth.NewAuthorizer(cm, th))
}

// want is one cell of the permission table: a status, the error code, and a word the
// refusal must contain (the missing role or action).
type want struct {
	status int
	code   string
	names  string
}

var (
	allowed   = want{status: 200}
	malformed = want{status: 400, code: "MALFORMED_UPLOAD"} // authorized; the body is refused
	anonymous = want{status: 401, code: "UNAUTHORIZED"}
)

func denied(names string) want { return want{status: 401, code: "DENIED", names: names} }

// TestPermissionTable holds every trust endpoint to the roles: reads need pull, writes
// (publish, server keys, delete) need push and the signer grant, the registry-wide
// changefeed needs the catalog grant; every refusal names what is missing.
func TestPermissionTable(t *testing.T) {
	e := start(t, nil)
	published(t, e, "perm/app", true)
	victim := "perm/victim"
	published(t, e, victim, true)

	const pw = "Perm-Pass-12345"
	for name, roles := range map[string][]string{
		"puller": {"AcrPull"}, "pusher": {"AcrPush"}, "signer": {"AcrPush", "AcrImageSigner"},
		"owner": {"Owner"}, "ownersigner": {"Owner", "AcrImageSigner"}, "nobody": nil,
	} {
		e.user(t, name, pw, roles...)
	}
	token := func(name string, actions ...string) string {
		var out wire.CreateTokenResponse
		req := wire.CreateTokenRequest{Name: name, ScopeMap: []wire.ScopeMapEntry{
			{Repository: "perm/app", Actions: actions}, {Repository: victim, Actions: actions}}}
		if code := e.call(t, "POST", "/coffer/v1/tokens", req, &out); code != 201 {
			t.Fatalf("create token %s: %d", name, code)
		}
		return out.Password
	}
	rwPass := token("tok-rw", "content/read", "content/write")
	rwsPass := token("tok-rws", "content/read", "content/write", "content/sign")

	type principal struct {
		name, user, pass string
		// meta: GET role and the repository changefeed; write: POST update, GET/POST key,
		// DELETE; feed: the registry-wide changefeed.
		meta, write, feed want
	}
	table := []principal{
		{name: "AcrPull", user: "puller", pass: pw, meta: allowed, write: denied("push"), feed: allowed},
		{name: "AcrPush", user: "pusher", pass: pw, meta: allowed, write: denied("AcrImageSigner"), feed: allowed},
		{name: "AcrPush+AcrImageSigner", user: "signer", pass: pw, meta: allowed, write: allowed, feed: allowed},
		{name: "Owner", user: "owner", pass: pw, meta: allowed, write: denied("AcrImageSigner"), feed: allowed},
		{name: "Owner+AcrImageSigner", user: "ownersigner", pass: pw, meta: allowed, write: allowed, feed: allowed},
		{name: "token read+write", user: "tok-rw", pass: rwPass, meta: allowed, write: denied("content/sign"), feed: denied("catalog")},
		{name: "token read+write+sign", user: "tok-rws", pass: rwsPass, meta: allowed, write: allowed, feed: denied("catalog")},
		{name: "user with nothing", user: "nobody", pass: pw, meta: denied("pull"), write: denied("pull"), feed: denied("catalog")},
		{name: "anonymous", meta: anonymous, write: anonymous, feed: anonymous},
	}
	base := e.inst.Client.Transport
	for _, p := range table {
		app, vic, feed := base, base, base
		if p.user != "" {
			app = dockerTransport(t, e, e.gun("perm/app"), p.user, p.pass, "pull", "push")
			vic = dockerTransport(t, e, e.gun(victim), p.user, p.pass, "pull", "push")
			feed = catalogTransport(t, e, p.user, p.pass)
		}
		tuf := e.inst.URL + "/v2/" + e.gun("perm/app") + "/_trust/tuf/"
		cells := []struct {
			endpoint string
			tr       http.RoundTripper
			method   string
			url      string
			w        want
		}{
			{"GET timestamp.json", app, "GET", tuf + "timestamp.json", p.meta},
			{"GET root.json", app, "GET", tuf + "root.json", p.meta},
			{"GET repository changefeed", app, "GET", e.inst.URL + "/v2/" + e.gun("perm/app") + "/_trust/changefeed?change=0&records=10", p.meta},
			{"POST update", app, "POST", tuf, orMalformed(p.write)},
			{"GET timestamp.key", app, "GET", tuf + "timestamp.key", p.write},
			{"POST snapshot.key (rotate)", app, "POST", tuf + "snapshot.key", p.write},
			{"DELETE collection", vic, "DELETE", e.inst.URL + "/v2/" + e.gun(victim) + "/_trust/tuf/", p.write},
			{"GET registry changefeed", feed, "GET", e.inst.URL + "/v2/_trust/changefeed?change=0&records=10", p.feed},
		}
		for _, c := range cells {
			var body io.Reader
			if c.endpoint == "POST update" {
				body = strings.NewReader("--xyz--\r\n") // a multipart body with no parts
			}
			req, _ := http.NewRequest(c.method, c.url, body)
			req.Header.Set("Content-Type", "multipart/form-data; boundary=xyz")
			resp, err := (&http.Client{Transport: c.tr}).Do(req)
			if err != nil {
				t.Fatalf("%s / %s: %v", p.name, c.endpoint, err)
			}
			got := readAPIError(resp)
			resp.Body.Close()
			if got.Status != c.w.status || got.Code != c.w.code || !strings.Contains(got.Message, c.w.names) {
				t.Errorf("%s × %s: answered %d %s %q, want %d %s naming %q", p.name, c.endpoint, got.Status, got.Code, got.Message, c.w.status, c.w.code, c.w.names)
			}
			if c.method == "DELETE" && got.Status == 200 {
				published(t, e, victim, true) // for the next principal
			}
		}
	}
}

// orMalformed: an authorized update with an empty body is refused as malformed, which
// shows the authorization passed.
func orMalformed(w want) want {
	if w == allowed {
		return malformed
	}
	return w
}
