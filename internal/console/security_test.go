package console_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/console"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// session signs in over HTTP as a browser would (the sign-in form's token, then the
// form), returning the client with its session cookie and the Set-Cookie of the answer.
func (e *env) session(t testing.TB, user, password string) (*http.Client, string) {
	t.Helper()
	c := e.browserClient(t)
	form := e.get(t, c, "/console/signin", http.StatusOK)
	resp, err := c.PostForm(e.Inst.URL+"/console/signin", url.Values{"signin": {formToken(t, form, "signin")},
		"username": {user}, "password": {password}, "next": {"/console/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("sign in as %s: %d %s", user, resp.StatusCode, resp.Header.Get("Location"))
	}
	var set string
	for _, v := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(v, "__Host-coffer-session=") {
			set = v
		}
	}
	return c, set
}

// get fetches path and checks its status, returning the body.
func (e *env) get(t testing.TB, c *http.Client, path string, want int) string {
	t.Helper()
	resp, err := c.Get(e.Inst.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s = %d, want %d\n%s", path, resp.StatusCode, want, body)
	}
	return string(body)
}

func (e *env) post(t testing.TB, c *http.Client, path string, form url.Values, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.Inst.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (e *env) tagExists(t testing.TB, repo, tag string) bool {
	t.Helper()
	var tl struct{ Tags []struct{ Name string } }
	e.MustDo(t, "GET", "/coffer/v1/registry/tags?repository="+url.QueryEscape(repo), nil, &tl)
	for _, x := range tl.Tags {
		if x.Name == tag {
			return true
		}
	}
	return false
}

func TestConsoleSecurity(t *testing.T) {
	e := start(t)
	anon := e.browserClient(t)

	t.Run("no session redirects to sign-in", func(t *testing.T) {
		for _, p := range []string{"/console/", "/console/repositories", "/console/tag?repository=team/app&tag=v1", "/console/audit"} {
			resp, err := anon.Get(e.Inst.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/signin?next=") {
				t.Errorf("GET %s without a session = %d %s, want 303 to sign-in", p, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
		if code, _ := e.post(t, anon, "/console/tag/delete", url.Values{"repository": {"team/app"}, "tag": {"v1"}, "confirm": {"v1"}}, nil); code != http.StatusForbidden {
			t.Errorf("POST delete without a session = %d, want 403", code)
		}
		// A browser asking for / is sent to the console; an API client is not.
		req, _ := http.NewRequest("GET", e.Inst.URL+"/", nil)
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		resp, _ := anon.Do(req)
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/console/" {
			t.Errorf("browser GET / = %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, _ = anon.Get(e.Inst.URL + "/")
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("non-browser GET / = %d, want 404", resp.StatusCode)
		}
	})

	admin, setCookie := e.session(t, "admin", e.Inst.AdminPassword)

	t.Run("cookie flags", func(t *testing.T) {
		for _, want := range []string{"HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age="} {
			if !strings.Contains(setCookie, want) {
				t.Errorf("session cookie %q lacks %s", setCookie, want)
			}
		}
		if strings.Contains(strings.ToLower(setCookie), "domain=") {
			t.Errorf("session cookie %q names a domain", setCookie)
		}
	})

	t.Run("CSP and framing headers", func(t *testing.T) {
		for _, p := range []string{"/console/", "/console/signin", "/console/static/style.css"} {
			resp, err := admin.Get(e.Inst.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			csp := resp.Header.Get("Content-Security-Policy")
			if csp != console.CSP || !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
				t.Errorf("%s CSP %q", p, csp)
			}
			if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s framing/sniffing headers %v", p, resp.Header)
			}
		}
		// No inline script anywhere: every <script> has a src.
		body := e.get(t, admin, "/console/tag?repository=team/app&tag=v1", http.StatusOK)
		if n, m := strings.Count(body, "<script"), strings.Count(body, "<script src=\"/console/static/"); n != m || n != 2 {
			t.Errorf("%d script tags, %d from the console's files", n, m)
		}
	})

	t.Run("stored XSS renders as text", func(t *testing.T) {
		e.MustDo(t, "POST", "/coffer/v1/vaults", map[string]any{"name": "xss"}, nil)
		var who struct{ ID string }
		e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
		e.SetPolicy(t, "xss", who.ID, "get", "list", "create")
		e.MustDo(t, "POST", "/coffer/v1/vaults/xss/keys/k1/create", map[string]any{"kty": "EC", "curve": "P-256", "tags": map[string]string{"note": xss}}, nil)
		for _, p := range []string{"/console/tag?repository=team/app&tag=v1", "/console/vault?name=xss", "/console/key?vault=xss&name=k1"} {
			body := e.get(t, admin, p, http.StatusOK)
			if strings.Contains(body, xss) || strings.Contains(body, "<img src=x") {
				t.Errorf("%s carries the XSS attempt unescaped", p)
			}
			if !strings.Contains(body, "&lt;script&gt;document.title=") {
				t.Errorf("%s does not show the attempt as text", p)
			}
		}
	})

	t.Run("state change without CSRF token is refused", func(t *testing.T) {
		form := url.Values{"repository": {"team/app"}, "tag": {"v1"}, "confirm": {"v1"}}
		if code, _ := e.post(t, admin, "/console/tag/delete", form, nil); code != http.StatusForbidden {
			t.Errorf("delete without CSRF = %d, want 403", code)
		}
		form.Set("csrf", "wrong")
		if code, _ := e.post(t, admin, "/console/tag/delete", form, nil); code != http.StatusForbidden {
			t.Errorf("delete with a wrong CSRF token = %d, want 403", code)
		}
		// The right token from another site is refused too.
		form.Set("csrf", formToken(t, e.get(t, admin, "/console/tag/delete?repository=team/app&tag=v1", http.StatusOK), "csrf"))
		if code, _ := e.post(t, admin, "/console/tag/delete", form, map[string]string{"Sec-Fetch-Site": "cross-site"}); code != http.StatusForbidden {
			t.Errorf("cross-site delete = %d, want 403", code)
		}
		if code, _ := e.post(t, admin, "/console/signout", url.Values{}, nil); code != http.StatusForbidden {
			t.Errorf("sign-out without CSRF = %d, want 403", code)
		}
		if !e.tagExists(t, "team/app", "v1") {
			t.Fatal("a refused delete deleted the tag")
		}
	})

	t.Run("AcrPull user sees no delete and a forced delete is refused", func(t *testing.T) {
		e.MustDo(t, "POST", "/coffer/v1/users", map[string]string{"name": "puller", "password": "puller-password-1"}, nil)
		e.MustDo(t, "POST", "/coffer/v1/role-assignments", map[string]string{"role": "AcrPull", "assignee": "puller", "scope": "repository/team/app"}, nil)
		dev, _ := e.session(t, "puller", "puller-password-1")
		body := e.get(t, dev, "/console/tag?repository=team/app&tag=v1", http.StatusOK)
		if strings.Contains(body, `id="delete"`) || !strings.Contains(body, `id="no-delete"`) {
			t.Error("the AcrPull user's tag page offers a delete")
		}
		if body := e.get(t, dev, "/console/repository?name=team/app", http.StatusOK); strings.Contains(body, "/console/tag/delete") {
			t.Error("the AcrPull user's tag list offers a delete")
		}
		csrf := formToken(t, body, "csrf")
		code, page := e.post(t, dev, "/console/tag/delete", url.Values{"csrf": {csrf}, "repository": {"team/app"}, "tag": {"v1"}, "confirm": {"v1"}}, nil)
		if code != http.StatusForbidden || !strings.Contains(page, "Ask an Owner") {
			t.Errorf("forced delete by the AcrPull user = %d\n%s", code, page)
		}
		code, _ = e.post(t, dev, "/console/tag/delete", url.Values{"csrf": {csrf}, "repository": {"team/app"}, "digest": {e.digest}, "confirm": {e.digest}}, nil)
		if code != http.StatusForbidden {
			t.Errorf("forced manifest delete by the AcrPull user = %d, want 403", code)
		}
		if !e.tagExists(t, "team/app", "v1") {
			t.Fatal("the AcrPull user deleted the tag")
		}
		// The refusal is in the audit trail? The registry API audits pushes and deletes
		// through its own path; the console added nothing of its own.
	})

	t.Run("wrong password and other principals", func(t *testing.T) {
		c := e.browserClient(t)
		form := e.get(t, c, "/console/signin", http.StatusOK)
		code, page := e.post(t, c, "/console/signin", url.Values{"signin": {formToken(t, form, "signin")}, "username": {"admin"}, "password": {"nope"}}, nil)
		if code != http.StatusUnauthorized || !strings.Contains(page, "Wrong user name or password") {
			t.Errorf("wrong password = %d\n%s", code, page)
		}
		// Without the sign-in form's cookie token (login CSRF) the attempt is refused unchecked.
		code, _ = e.post(t, e.browserClient(t), "/console/signin", url.Values{"signin": {"x"}, "username": {"admin"}, "password": {e.Inst.AdminPassword}}, nil)
		if code != http.StatusForbidden {
			t.Errorf("sign-in without the form token = %d, want 403", code)
		}
	})

	t.Run("sign-out revokes the session on the server", func(t *testing.T) {
		c, set := e.session(t, "admin", e.Inst.AdminPassword)
		cookie := strings.SplitN(strings.TrimPrefix(set, "__Host-coffer-session="), ";", 2)[0]
		body := e.get(t, c, "/console/", http.StatusOK)
		if code, _ := e.post(t, c, "/console/signout", url.Values{"csrf": {formToken(t, body, "csrf")}}, nil); code != http.StatusSeeOther {
			t.Fatalf("sign out = %d", code)
		}
		// Replaying the old cookie (as a thief who copied it would) gets no page.
		req, _ := http.NewRequest("GET", e.Inst.URL+"/console/", nil)
		req.AddCookie(&http.Cookie{Name: "__Host-coffer-session", Value: cookie})
		resp, err := anon.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("old cookie after sign-out = %d, want 303 to sign-in", resp.StatusCode)
		}
	})
}

// TestSignInThrottling: console sign-ins and the token endpoint share one limiter, so
// failures at either count against both, and a throttled sign-in is refused unchecked.
func TestSignInThrottling(t *testing.T) {
	e := &env{Env: vaulttest.Start(t, func(c *config.Server) { c.LoginFailureLimit = 3 })}
	c := e.browserClient(t)
	try := func(password string) int {
		form := e.get(t, c, "/console/signin", http.StatusOK)
		code, _ := e.post(t, c, "/console/signin", url.Values{"signin": {formToken(t, form, "signin")}, "username": {"admin"}, "password": {password}}, nil)
		return code
	}
	for i := range 3 {
		if code := try("wrong"); code != http.StatusUnauthorized {
			t.Fatalf("failure %d = %d, want 401", i+1, code)
		}
	}
	if code := try(e.Inst.AdminPassword); code != http.StatusTooManyRequests {
		t.Fatalf("the right password after 3 failures = %d, want 429", code)
	}
	resp, err := e.Inst.Client.PostForm(e.Inst.URL+"/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {e.Inst.AdminPassword}, "service": {"coffer-management"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("token endpoint after 3 console failures = %d, want 429 (one limiter)", resp.StatusCode)
	}
}
