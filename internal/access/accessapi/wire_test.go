package accessapi_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/access/accessapi"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/token"
)

// sameJSON fails unless the wire value encodes byte for byte as the domain value did.
func sameJSON(t *testing.T, name string, domain, onWire any) {
	t.Helper()
	a, err := json.Marshal(domain)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(onWire)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Errorf("%s on the wire changed:\nwas %s\nnow %s", name, a, b)
	}
}

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
		sameJSON(t, "role definition", old, accessapi.RoleDefinition(d))
	}
	for _, a := range []access.Assignment{
		{ID: "i", Role: "r", PrincipalID: "p", PrincipalKind: identity.KindUser, PrincipalName: "n", Scope: "/vaults/v", CreatedAt: now, CreatedBy: "c"},
		{},
	} {
		sameJSON(t, "role assignment", a, accessapi.Assignment(a))
	}
	for _, tok := range []access.RepositoryToken{
		{Name: "ci", ObjectID: "o", ScopeMap: []access.ScopeMapEntry{{Repository: "app", Actions: []string{"content/read"}}, {Repository: "x"}}, CreatedAt: now, CreatedBy: "c"},
		{ScopeMap: []access.ScopeMapEntry{}},
		{},
	} {
		sameJSON(t, "repository token", tok, accessapi.RepositoryToken(tok))
		old := struct {
			access.RepositoryToken
			Password string `json:"password"`
		}{tok, "pw"}
		sameJSON(t, "created token", old, wire.CreateTokenResponse{RepositoryToken: accessapi.RepositoryToken(tok), Password: "pw"})
	}
	for _, p := range []access.AccessPolicy{{Vault: "v", ObjectID: "o", KeyPermissions: []string{"get"}, UpdatedAt: now}, {}} {
		sameJSON(t, "access policy", p, accessapi.AccessPolicy(p))
	}
	if wire.AudienceManagement != token.AudienceManagement {
		t.Errorf("wire.AudienceManagement = %q, the token service issues %q", wire.AudienceManagement, token.AudienceManagement)
	}
}

// TestWireScopeSyntaxIsTheAccessPart's: the CLI checks scopes and scope maps with the wire
// package's copy of the parser; it must agree with the server's on value and message.
func TestWireScopeSyntaxIsTheAccessParts(t *testing.T) {
	for _, s := range []string{"", "/", "/registry", "/registry/", "registry", "repository/app", "repository/Team/App",
		"/registry/repositories/a/b", "/registry/repositories/", "vault/Team1", "vault/team1/key/KEK", "/vaults/t/keys/k",
		"/vaults/t/secrets/k", "/vaults/t/keys/", "/vaults/t/keys/a/b", "/vaults/-bad", "/vaults/t/keys/bad_name", "/other", "other",
		"/vaults/" + string(make([]byte, 70)), "repository/a__b", "repository/a___b"} {
		got, gerr := wire.ParseScope(s)
		want, werr := access.ParseScope(s)
		if got != string(want) || errText(gerr) != errText(werr) {
			t.Errorf("ParseScope(%q): wire %q, %v; access %q, %v", s, got, gerr, want, werr)
		}
	}
	for _, s := range []string{"app:content/read", "app:CONTENT/write, content/read,content/read", "team/*:content/read",
		"app", ":content/read", "app:", "app:bogus", "app:,", "Bad:content/read", "a/*/*:content/read", "app:content/read,bogus"} {
		got, gerr := wire.ParseScopeMapEntry(s)
		want, werr := access.ParseScopeMapEntry(s)
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(want)
		if string(a) != string(b) || errText(gerr) != errText(werr) {
			t.Errorf("ParseScopeMapEntry(%q): wire %s, %v; access %s, %v", s, a, gerr, b, werr)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
