package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/registry/conformance"
	"github.com/cofferhq/coffer/internal/servertest"
)

// testHost is a name for the test server that registry clients do not treat as
// plain-HTTP localhost; the test transport dials the server's real address for it.
const testHost = "coffer.test"

type env struct {
	inst *servertest.Instance
	host string // coffer.test:PORT
	mu   sync.Mutex
	toks map[string]string
}

func startEnv(t *testing.T, mutate func(*config.Server)) *env {
	t.Helper()
	inst := servertest.Start(t, func(c *config.Server) {
		c.Hostnames = append(c.Hostnames, testHost)
		if mutate != nil {
			mutate(c)
		}
	})
	_, port, _ := net.SplitHostPort(inst.Addr)
	return &env{inst: inst, host: testHost + ":" + port, toks: map[string]string{}}
}

// transport trusts the server's CA and dials it for coffer.test.
func (e *env) transport() *http.Transport {
	tr := e.inst.Client.Transport.(*http.Transport).Clone()
	addr := e.inst.Addr
	dialer := &net.Dialer{}
	tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
		if strings.HasPrefix(a, testHost+":") {
			a = addr
		}
		return dialer.DialContext(ctx, network, a)
	}
	return tr
}

// registryToken gets a registry token through the real Docker token flow.
func (e *env) registryToken(t *testing.T, user, pass string, scopes ...string) (string, error) {
	key := user + "\x00" + strings.Join(scopes, " ")
	e.mu.Lock()
	if tok, ok := e.toks[key]; ok {
		e.mu.Unlock()
		return tok, nil
	}
	e.mu.Unlock()
	q := url.Values{"service": {"coffer-registry"}}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	req, _ := http.NewRequest("GET", e.inst.URL+"/oauth2/token?"+q.Encode(), nil)
	req.SetBasicAuth(user, pass)
	resp, err := e.inst.Client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("token endpoint: %d %s", resp.StatusCode, body)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	json.Unmarshal(body, &tr)
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	e.mu.Lock()
	e.toks[key] = tok
	e.mu.Unlock()
	return tok, nil
}

func (e *env) adminToken(t *testing.T, scopes ...string) string {
	t.Helper()
	tok, err := e.registryToken(t, "admin", e.inst.AdminPassword, scopes...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// managementToken gets a management API token for user.
func (e *env) managementToken(t *testing.T, user, pass string) (string, error) {
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}, "service": {"coffer-management"}}
	resp, err := e.inst.Client.PostForm(e.inst.URL+"/oauth2/token", form)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("management token: %d %s", resp.StatusCode, body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	json.Unmarshal(body, &tr)
	return tr.AccessToken, nil
}

// mgmtCall calls the management API with a token, decoding a JSON answer into out.
func (e *env) mgmtCall(t *testing.T, tok, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.inst.URL+path, body)
	req.Header.Set("Authorization", "Bearer "+tok)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v (%s)", method, path, err, raw)
		}
	}
	return resp.StatusCode
}

func TestServerConformance(t *testing.T) {
	e := startEnv(t, nil)
	conformance.Run(t, conformance.Target{
		URL:    e.inst.URL,
		Client: e.inst.Client,
		Token:  func(t *testing.T, scopes ...string) string { return e.adminToken(t, scopes...) },
	})
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
