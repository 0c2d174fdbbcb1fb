package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/servertest"
)

// TestOpenAPIDocumentMatchesTheServedRoutes holds /coffer/v1/openapi.json to what the
// server serves: every route mounted through the management route table is in the
// document, and every route the document lists is answered by a management handler (an
// authentication challenge, not the mux's 404 or 405).
func TestOpenAPIDocumentMatchesTheServedRoutes(t *testing.T) {
	inst := servertest.Start(t, nil)
	resp, err := inst.Client.Get(inst.URL + "/coffer/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /coffer/v1/openapi.json without a token = %d %s, want 200 (it is public)", resp.StatusCode, raw)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document (%v): %.200s", err, raw)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}

	registered := inst.Server.ManagementRoutes()
	if len(registered) < 40 {
		t.Fatalf("only %d management routes registered: %v", len(registered), registered)
	}
	for _, pattern := range registered {
		if !documented[strings.ReplaceAll(pattern, "...}", "}")] {
			t.Errorf("%s is served but the OpenAPI document lacks it", pattern)
		}
	}

	param := regexp.MustCompile(`\{[A-Za-z]+\}`)
	for route := range documented {
		method, path, _ := strings.Cut(route, " ")
		sample := param.ReplaceAllStringFunc(path, func(p string) string {
			switch p {
			case "{name}":
				if strings.Contains(path, "/repositories/") {
					return "team/app"
				}
			case "{op}":
				return "wrapkey"
			}
			return "x1"
		})
		req, _ := http.NewRequest(method, inst.URL+sample, nil)
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := http.StatusUnauthorized
		if path == "/coffer/v1/openapi.json" {
			want = http.StatusOK
		}
		if resp.StatusCode != want || (want == http.StatusUnauthorized && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `realm="coffer"`)) {
			t.Errorf("%s (documented) answered %d %s, want %d from a management handler: no handler serves it", route, resp.StatusCode, body, want)
		}
	}
	if !slices.IsSorted(registered) {
		t.Errorf("ManagementRoutes is not sorted: %v", registered)
	}
}
