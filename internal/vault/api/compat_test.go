package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// raw sends one request to a vault's data plane and decodes the JSON answer.
func raw(t testing.TB, e *vaulttest.Env, method, u, tok string, body any) (*http.Response, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, u, rd)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.HTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(data) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&out); err != nil {
			t.Fatalf("%s %s answered %d with non-JSON %q", method, u, resp.StatusCode, data)
		}
	}
	return resp, out
}

func vaultToken(t testing.TB, e *vaulttest.Env, p vaulttest.Principal) string {
	t.Helper()
	tok, err := e.Credential(t, p).GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://vault.localhost/.default"}})
	if err != nil {
		t.Fatalf("vault token: %v", err)
	}
	return tok.Token
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	c, _ := e["code"].(string)
	if _, ok := e["message"].(string); !ok {
		return "<no message>"
	}
	return c
}

var challengeRE = regexp.MustCompile(`^Bearer authorization="([^"]+)", resource="([^"]+)"$`)

// TestChallengeRegression: a request without Authorization (the SDK's first, bodiless one)
// gets 401 with authorization="https://HOST/TENANT" and a resource whose host:port is a
// parent of the vault's; it is never rate-limited, while authenticated calls over the
// limit get 429 with Retry-After.
func TestChallengeRegression(t *testing.T) {
	e := vaulttest.Start(t, func(c *config.Server) { c.Vault.RateLimit = 2 })
	e.CreateVault(t, "team1", nil)
	app := e.ServicePrincipal(t, "app")
	e.SetPolicy(t, "team1", app.ObjectID, "list")
	base := e.HostURL("team1")
	for i := 0; i < 25; i++ {
		resp, body := raw(t, e, "POST", base+"/keys/k/create?api-version=2025-07-01", "", nil)
		if resp.StatusCode != 401 || errCode(body) != "Unauthorized" {
			t.Fatalf("unauthenticated request %d: %d %v", i, resp.StatusCode, body)
		}
		m := challengeRE.FindStringSubmatch(resp.Header.Get("WWW-Authenticate"))
		if m == nil {
			t.Fatalf("challenge %q", resp.Header.Get("WWW-Authenticate"))
		}
		au, err := url.Parse(m[1])
		if err != nil || au.Scheme != "https" || len(strings.Trim(au.Path, "/")) == 0 || strings.Trim(au.Path, "/") != e.TenantID {
			t.Fatalf("authorization %q must be https://HOST/%s", m[1], e.TenantID)
		}
		ru, _ := url.Parse(m[2])
		vu, _ := url.Parse(base)
		if !strings.HasSuffix(vu.Host, "."+ru.Host) {
			t.Fatalf("resource %q is not a parent of %q", m[2], vu.Host)
		}
	}
	tok := vaultToken(t, e, app)
	throttled := false
	for i := 0; i < 20 && !throttled; i++ {
		resp, body := raw(t, e, "GET", base+"/keys?api-version=7.4", tok, nil)
		switch resp.StatusCode {
		case 200:
		case 429:
			throttled = true
			if errCode(body) != "Throttled" || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Retry-After") == "0" {
				t.Fatalf("429 without Throttled/Retry-After: %v %v", resp.Header, body)
			}
		default:
			t.Fatalf("authenticated list: %d %v", resp.StatusCode, body)
		}
	}
	if !throttled {
		t.Fatal("20 calls at a 2/s limit were never throttled")
	}
}

// TestWireRegression covers api-versions, base64url, timestamps, error shape and 4xx for
// bad input.
func TestWireRegression(t *testing.T) {
	e := vaulttest.Start(t, nil)
	e.CreateVault(t, "team1", nil)
	app := e.ServicePrincipal(t, "app")
	e.SetPolicy(t, "team1", app.ObjectID, "all")
	tok := vaultToken(t, e, app)
	base := e.HostURL("team1")

	for _, v := range []string{"7.0", "7.2", "7.3", "7.4", "7.5", "7.6", "7.6-preview.1", "2025-07-01", "2026-06-01-preview", "2031-01-01"} {
		if resp, body := raw(t, e, "GET", base+"/keys?api-version="+v, tok, nil); resp.StatusCode != 200 {
			t.Errorf("api-version %s: %d %v", v, resp.StatusCode, body)
		}
	}
	for _, v := range []string{"", "2016-10-01", "6.0", "latest"} {
		if resp, body := raw(t, e, "GET", base+"/keys?api-version="+v, tok, nil); resp.StatusCode != 400 || errCode(body) != "BadParameter" {
			t.Errorf("api-version %q: %d %v", v, resp.StatusCode, body)
		}
	}

	resp, body := raw(t, e, "POST", base+"/keys/k1/create?api-version=7.4", tok, map[string]any{"kty": "RSA", "key_size": 2048})
	if resp.StatusCode != 200 {
		t.Fatalf("create: %d %v", resp.StatusCode, body)
	}
	key := body["key"].(map[string]any)
	for _, f := range []string{"n", "e"} {
		s := key[f].(string)
		if strings.ContainsAny(s, "=+/") {
			t.Errorf("%s is not unpadded base64url: %q", f, s)
		}
	}
	if _, ok := key["d"]; ok {
		t.Error("the private exponent left the vault")
	}
	attrs := body["attributes"].(map[string]any)
	for _, f := range []string{"created", "updated"} {
		n, ok := attrs[f].(json.Number)
		if !ok || strings.ContainsAny(string(n), ".eE") {
			t.Errorf("attributes.%s is not an integer Unix time: %v", f, attrs[f])
		}
	}
	if !kidRE.MatchString(key["kid"].(string)) {
		t.Errorf("kid %v", key["kid"])
	}

	bad := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"not JSON", "POST", "/keys/k2/create", "{", 400, "BadParameter"},
		{"empty body", "POST", "/keys/k2/create", "", 400, "BadParameter"},
		{"unknown kty", "POST", "/keys/k2/create", map[string]any{"kty": "DSA"}, 400, "BadParameter"},
		{"bad size", "POST", "/keys/k2/create", map[string]any{"kty": "RSA", "key_size": 1000}, 400, "BadParameter"},
		{"bad curve", "POST", "/keys/k2/create", map[string]any{"kty": "EC", "crv": "P-192"}, 400, "BadParameter"},
		{"bad key op", "POST", "/keys/k2/create", map[string]any{"kty": "RSA", "key_ops": []string{"fly"}}, 400, "BadParameter"},
		{"bad name", "POST", "/keys/bad_name/create", map[string]any{"kty": "RSA"}, 400, "BadParameter"},
		{"bad base64", "POST", "/keys/k1/wrapkey", map[string]any{"alg": "RSA-OAEP", "value": "!!!"}, 400, "BadParameter"},
		{"no alg", "POST", "/keys/k1/wrapkey", map[string]any{"value": "AAAA"}, 400, "BadParameter"},
		{"unknown alg", "POST", "/keys/k1/wrapkey", map[string]any{"alg": "ROT13", "value": "AAAA"}, 400, "BadParameter"},
		{"garbage ciphertext", "POST", "/keys/k1/unwrapkey", map[string]any{"alg": "RSA-OAEP", "value": "AAAA"}, 400, "BadParameter"},
		{"digest length", "POST", "/keys/k1/sign", map[string]any{"alg": "RS256", "value": "AAAA"}, 400, "BadParameter"},
		{"signature alg", "POST", "/keys/k1/sign", map[string]any{"alg": "HS256", "value": "AAAA"}, 400, "BadParameter"},
		{"bad timestamp", "PATCH", "/keys/k1", map[string]any{"attributes": map[string]any{"exp": "soon"}}, 400, "BadParameter"},
		{"import without e", "PUT", "/keys/k3", map[string]any{"key": map[string]any{"kty": "RSA", "n": "AQAB"}}, 400, "BadParameter"},
		{"import public only", "PUT", "/keys/k3", map[string]any{"key": map[string]any{"kty": "EC", "crv": "P-256", "x": "AQAB", "y": "AQAB"}}, 400, "BadParameter"},
		{"restore garbage", "POST", "/keys/restore", map[string]any{"value": "AAAA"}, 400, "BadParameter"},
		{"rng count", "POST", "/rng", map[string]any{"count": 0}, 400, "BadParameter"},
		{"maxresults", "GET", "/keys?maxresults=100", nil, 400, "BadParameter"},
		{"skiptoken", "GET", "/keys/k1/versions?$skiptoken=%21%21", nil, 400, "BadParameter"},
		{"missing key", "GET", "/keys/nope/", nil, 404, "KeyNotFound"},
		{"missing version", "GET", "/keys/k1/0123456789abcdef0123456789abcdef", nil, 404, "KeyNotFound"},
		{"missing deleted key", "GET", "/deletedkeys/nope", nil, 404, "KeyNotFound"},
		{"secrets", "GET", "/secrets", nil, 400, "BadParameter"},
		{"unknown path", "GET", "/nothing/here", nil, 404, "NotFound"},
		{"method", "DELETE", "/keys", nil, 405, "BadParameter"},
		{"release", "POST", "/keys/k1/release", map[string]any{}, 400, "BadParameter"},
	}
	for _, c := range bad {
		sep := "?"
		if strings.Contains(c.path, "?") {
			sep = "&"
		}
		resp, body := raw(t, e, c.method, base+c.path+sep+"api-version=7.4", tok, c.body)
		if resp.StatusCode != c.status || errCode(body) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.name, resp.StatusCode, body, c.status, c.code)
		}
	}
	// A token for another audience is refused with a fresh challenge.
	resp, body = raw(t, e, "GET", base+"/keys?api-version=7.4", e.Token, nil)
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" || errCode(body) != "Unauthorized" {
		t.Errorf("management token on the vault: %d %v", resp.StatusCode, body)
	}
	// Vault host names are served over HTTP/1.1 (cheaper for small calls); other names keep
	// HTTP/2.
	if resp, _ := raw(t, e, "GET", base+"/keys?api-version=7.4", tok, nil); resp.Proto != "HTTP/1.1" {
		t.Errorf("vault host name negotiated %s", resp.Proto)
	}
	if resp, err := e.HTTP.Get(e.Inst.URL + "/healthz"); err != nil || resp.Proto != "HTTP/2.0" {
		t.Errorf("main URL: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	// An unknown vault host.
	resp, body = raw(t, e, "GET", e.HostURL("nosuch")+"/keys?api-version=7.4", tok, nil)
	if resp.StatusCode != 404 {
		t.Errorf("unknown vault: %d %v", resp.StatusCode, body)
	}
}

// TestNetworkRules: a Deny vault refuses addresses outside its rules with a 403 naming the
// rule, and lets allowed ones through.
func TestNetworkRules(t *testing.T) {
	e := vaulttest.Start(t, nil)
	e.CreateVault(t, "locked", map[string]any{"networkAcls": map[string]any{"defaultAction": "Deny", "ipRules": []string{"10.0.0.0/8"}}})
	app := e.ServicePrincipal(t, "app")
	e.SetPolicy(t, "locked", app.ObjectID, "list")
	tok := vaultToken(t, e, app)
	u := e.HostURL("locked") + "/keys?api-version=7.4"
	resp, body := raw(t, e, "GET", u, tok, nil)
	msg, _ := body["error"].(map[string]any)["message"].(string)
	if resp.StatusCode != 403 || errCode(body) != "Forbidden" || !strings.Contains(msg, "127.0.0.1") || !strings.Contains(msg, "defaultAction=Deny") {
		t.Fatalf("outside the rules: %d %v", resp.StatusCode, body)
	}
	e.MustDo(t, "PATCH", "/coffer/v1/vaults/locked", map[string]any{"networkAcls": map[string]any{"defaultAction": "Deny", "ipRules": []string{"10.0.0.0/8", "127.0.0.1"}}}, nil)
	if resp, body := raw(t, e, "GET", u, tok, nil); resp.StatusCode != 200 {
		t.Fatalf("inside the rules: %d %v", resp.StatusCode, body)
	}
}
