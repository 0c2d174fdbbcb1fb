package accessapi_test

import (
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/access/accessapi"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/mgmt/wire/wiretest"
	"github.com/cofferhq/coffer/internal/token"
)

func TestWireTypesEncodeAsTheDomainTypesDid(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	for _, d := range []access.RoleDefinition{
		{Name: "AcrPull", Description: "pull", Actions: []access.Action{access.RegistryPull}},
		{Name: "Owner", Actions: []access.Action{"*"}, NotActions: []access.Action{access.RegistrySign}},
		{},
	} {
		old := struct {
			access.RoleDefinition
			EffectiveActions []access.Action `json:"effectiveActions"`
		}{d, d.EffectiveActions()}
		wiretest.SameJSON(t, "role definition", old, accessapi.RoleDefinition(d))
	}
	for _, a := range []access.Assignment{
		{ID: "i", Role: "r", PrincipalID: "p", PrincipalKind: identity.KindUser, PrincipalName: "n", Scope: "/vaults/v", CreatedAt: now, CreatedBy: "c"},
		{},
	} {
		wiretest.SameJSON(t, "role assignment", a, accessapi.Assignment(a))
	}
	for _, tok := range []access.RepositoryToken{
		{Name: "ci", ObjectID: "o", ScopeMap: []access.ScopeMapEntry{{Repository: "app", Actions: []string{"content/read"}}, {Repository: "x"}}, CreatedAt: now, CreatedBy: "c"},
		{ScopeMap: []access.ScopeMapEntry{}},
		{},
	} {
		wiretest.SameJSON(t, "repository token", tok, accessapi.RepositoryToken(tok))
		old := struct {
			access.RepositoryToken
			Password string `json:"password"`
		}{tok, "pw"}
		wiretest.SameJSON(t, "created token", old, wire.CreateTokenResponse{RepositoryToken: accessapi.RepositoryToken(tok), Password: "pw"})
	}
	for _, p := range []access.AccessPolicy{{Vault: "v", ObjectID: "o", KeyPermissions: []string{"get"}, UpdatedAt: now}, {}} {
		wiretest.SameJSON(t, "access policy", p, accessapi.AccessPolicy(p))
	}
	if wire.AudienceManagement != token.AudienceManagement {
		t.Errorf("wire.AudienceManagement = %q, the token service issues %q", wire.AudienceManagement, token.AudienceManagement)
	}
}
