package mgmt_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/token"
)

type refuseAll struct{}

func (refuseAll) Verify(context.Context, string, string) (*token.Claims, error) {
	return nil, errors.New("no")
}

func TestRouterMountsOnlyTableRoutesAndDocumentsThemAll(t *testing.T) {
	mux := http.NewServeMux()
	rt, err := mgmt.NewRouter(mux, refuseAll{})
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a pattern outside the route table was mounted")
			}
		}()
		rt.HandleFunc("GET /coffer/v1/not-in-the-table", func(http.ResponseWriter, *http.Request) {})
	}()
	rt.HandleFunc("GET /coffer/v1/whoami", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	if got := strings.Join(rt.Registered(), ","); got != "GET /coffer/v1/openapi.json,GET /coffer/v1/whoami" {
		t.Errorf("Registered() = %s", got)
	}
	// Non-public routes are authenticated by the router.
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/coffer/v1/whoami", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("whoami without a token: %d", rec.Code)
	}
	// The document is public and lists every route of the table.
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/coffer/v1/openapi.json", nil))
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &doc) != nil {
		t.Fatalf("openapi.json: %d %.200s", rec.Code, rec.Body.String())
	}
	for _, r := range mgmt.Routes() {
		op, ok := doc.Paths[strings.ReplaceAll(r.Path, "...}", "}")][strings.ToLower(r.Method)]
		if !ok || op.OperationID != r.ID {
			t.Errorf("the document lacks %s (%s)", r.Pattern(), r.ID)
		}
	}
	for _, name := range []string{"Key", "Vault", "AuditRecord", "ListOfRoleAssignment", "EncryptionStatus", "Error"} {
		if _, ok := doc.Components.Schemas[name]; !ok {
			t.Errorf("the document has no %s schema", name)
		}
	}
}
