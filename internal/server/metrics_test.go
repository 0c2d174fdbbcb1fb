package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/servertest"
)

// TestRegistryMetrics pushes and pulls a blob, gets tokens and runs GC against a real
// server, then checks /metrics counts them with no repository name in any label.
func TestRegistryMetrics(t *testing.T) {
	inst := servertest.Start(t, nil)
	c := inst.Client
	const repo = "metricsrepo-secret-name"
	do := func(req *http.Request, want int) []byte {
		t.Helper()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, b)
		}
		return b
	}
	tokenOf := func(b []byte) string {
		var tr struct {
			Token       string `json:"token"`
			AccessToken string `json:"access_token"`
		}
		json.Unmarshal(b, &tr)
		if tr.Token != "" {
			return tr.Token
		}
		return tr.AccessToken
	}
	// A Docker token for push and pull.
	q := url.Values{"service": {"coffer-registry"}, "scope": {"repository:" + repo + ":push,pull"}}
	req, _ := http.NewRequest("GET", inst.URL+"/oauth2/token?"+q.Encode(), nil)
	req.SetBasicAuth("admin", inst.AdminPassword)
	tok := tokenOf(do(req, 200))
	// A wrong password: a denied token request.
	req, _ = http.NewRequest("GET", inst.URL+"/oauth2/token?"+q.Encode(), nil)
	req.SetBasicAuth("admin", "wrong")
	do(req, 401)

	blob := []byte("metrics blob content")
	sum := sha256.Sum256(blob)
	dg := "sha256:" + hex.EncodeToString(sum[:])
	req, _ = http.NewRequest("POST", inst.URL+"/v2/"+repo+"/blobs/uploads/?digest="+dg, bytes.NewReader(blob))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/octet-stream")
	do(req, 201)
	req, _ = http.NewRequest("POST", inst.URL+"/v2/"+repo+"/blobs/uploads/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	do(req, 202) // left open: one upload session
	req, _ = http.NewRequest("GET", inst.URL+"/v2/"+repo+"/blobs/"+dg, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if got := do(req, 200); !bytes.Equal(got, blob) {
		t.Fatalf("pulled %q", got)
	}

	// A management token (password grant) and a GC run.
	form := url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {inst.AdminPassword}, "service": {"coffer-management"}}
	req, _ = http.NewRequest("POST", inst.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	mtok := tokenOf(do(req, 200))
	req, _ = http.NewRequest("POST", inst.URL+"/coffer/v1/registry/gc", nil)
	req.Header.Set("Authorization", "Bearer "+mtok)
	do(req, 200)

	req, _ = http.NewRequest("GET", inst.URL+"/metrics", nil)
	text := string(do(req, 200))
	for _, want := range []string{
		`coffer_registry_pushes_total{kind="blob",result="ok"} 1`,
		`coffer_registry_push_bytes_total{kind="blob"} 20`,
		`coffer_registry_pulls_total{kind="blob",result="ok"} 1`,
		`coffer_registry_pull_bytes_total{kind="blob"} 20`,
		`coffer_registry_upload_sessions_open 1`,
		`coffer_registry_gc_runs_total{result="ok"} 1`,
		`coffer_registry_gc_freed_bytes_total 0`,
		`coffer_token_requests_total{grant="docker",result="ok"} 1`,
		`coffer_token_requests_total{grant="docker",result="denied"} 1`,
		`coffer_token_requests_total{grant="password",result="ok"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Encryption at rest: the blob was sealed on push and opened on pull, and the key is
	// accessible (the start checked it).
	for _, name := range []string{"coffer_encryption_sealed_bytes_total", "coffer_encryption_opened_bytes_total"} {
		if v := metricValue(t, text, name); v < float64(len(blob)) {
			t.Errorf("%s = %v, want at least the %d bytes of the blob", name, v, len(blob))
		}
	}
	if v := metricValue(t, text, "coffer_encryption_key_accessible"); v != 1 {
		t.Errorf("coffer_encryption_key_accessible = %v, want 1", v)
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", grepCoffer(text))
	}
	for _, v := range regexp.MustCompile(`="([^"]*)"`).FindAllStringSubmatch(text, -1) {
		if strings.Contains(v[1], "metricsrepo") || strings.Contains(v[1], "sha256:") || v[1] == "admin" {
			t.Errorf("a label value names a repository, digest or user: %q", v[1])
		}
	}
}

// metricValue is the value of an unlabelled sample in a /metrics text (-1 when absent).
func metricValue(t *testing.T, text, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		t.Errorf("/metrics lacks %s", name)
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

func grepCoffer(text string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "coffer_registry") || strings.HasPrefix(l, "coffer_token") || strings.HasPrefix(l, "coffer_encryption") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
