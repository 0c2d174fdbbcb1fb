package accessapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/servertest"
)

// TestAccessPolicyChangesAreAudited: the access part records every attempt to change a
// vault's access policies, those refused before authentication included.
func TestAccessPolicyChangesAreAudited(t *testing.T) {
	inst := servertest.Start(t, nil)
	admin := login(t, inst, "admin", inst.AdminPassword)
	admin.must("POST", "/coffer/v1/vaults", map[string]any{"name": "team1"}, nil, http.StatusCreated)
	admin.must("PUT", "/coffer/v1/vaults/team1/access-policies/admin", map[string]any{"keyPermissions": []string{"get"}}, nil, http.StatusOK)
	anon := &client{t: t, inst: inst}
	if status, _ := anon.call("PUT", "/coffer/v1/vaults/team1/access-policies/admin", map[string]any{"keyPermissions": []string{"all"}}, nil); status != http.StatusUnauthorized {
		t.Fatalf("unauthenticated policy change: %d", status)
	}
	admin.must("DELETE", "/coffer/v1/vaults/team1/access-policies/admin", nil, nil, http.StatusNoContent)
	admin.must("DELETE", "/coffer/v1/vaults/team1/access-policies/admin", nil, nil, http.StatusNotFound)

	al := inst.Server.Audit()
	if err := al.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	recs, err := al.List(t.Context(), audit.Filter{Component: "vault", Resource: "vaults/team1"})
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for _, r := range recs {
		if strings.HasPrefix(r.Operation, "AccessPolicy") {
			trail = append(trail, r.Operation+":"+r.Result+":"+r.PrincipalName+":"+r.Target+":"+r.Detail)
		}
	}
	want := "AccessPolicySet:success:admin:team1/access-policies/admin: AccessPolicySet:denied::team1/access-policies/admin:answered 401 " +
		"AccessPolicyDelete:success:admin:team1/access-policies/admin: AccessPolicyDelete:failure:admin:team1/access-policies/admin:answered 404"
	if got := strings.Join(trail, " "); got != want {
		t.Errorf("access-policy audit trail:\n got %s\nwant %s", got, want)
	}
}
