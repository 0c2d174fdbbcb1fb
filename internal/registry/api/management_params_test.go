package api_test

import (
	"net/http"
	"testing"
)

// TestManagementRefusesUnparsableParameters: a flag the server cannot read is a 400, never
// read as false: "dryRun=maybe" used to run a real collection.
func TestManagementRefusesUnparsableParameters(t *testing.T) {
	e := startEnv(t, nil)
	tok, err := e.managementToken(t, "admin", e.inst.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/coffer/v1/registry/gc?dryRun=maybe",
		"/coffer/v1/registry/gc?dryRun=",
		"/coffer/v1/registry/gc?dryRun=yes",
	} {
		if st := e.mgmtCall(t, tok, "POST", path, nil, nil); st != http.StatusBadRequest {
			t.Errorf("POST %s = %d, want 400", path, st)
		}
	}
	if st := e.mgmtCall(t, tok, "GET", "/coffer/v1/registry/repositories?n=many", nil, nil); st != http.StatusBadRequest {
		t.Errorf("GET repositories?n=many = %d, want 400", st)
	}
	for _, path := range []string{"/coffer/v1/registry/gc?dryRun=true", "/coffer/v1/registry/gc?dryRun=false", "/coffer/v1/registry/gc"} {
		if st := e.mgmtCall(t, tok, "POST", path, nil, nil); st != http.StatusOK {
			t.Errorf("POST %s = %d, want 200", path, st)
		}
	}
}
