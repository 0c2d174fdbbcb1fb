package accessapi

import (
	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

func actions(in []access.Action) []string {
	return wire.MapSlice(in, func(a access.Action) string { return string(a) })
}

// RoleDefinition is d on the wire, with the actions it comes to.
func RoleDefinition(d access.RoleDefinition) wire.RoleDefinition {
	return wire.RoleDefinition{Name: d.Name, Description: d.Description, Actions: actions(d.Actions),
		NotActions: actions(d.NotActions), EffectiveActions: actions(d.EffectiveActions())}
}

// Assignment is a on the wire.
func Assignment(a access.Assignment) wire.RoleAssignment {
	return wire.RoleAssignment{ID: a.ID, Role: a.Role, PrincipalID: a.PrincipalID, PrincipalKind: string(a.PrincipalKind),
		PrincipalName: a.PrincipalName, Scope: string(a.Scope), CreatedAt: a.CreatedAt, CreatedBy: a.CreatedBy}
}

// RepositoryToken is t on the wire.
func RepositoryToken(t access.RepositoryToken) wire.RepositoryToken {
	return wire.RepositoryToken{Name: t.Name, ObjectID: t.ObjectID, CreatedAt: t.CreatedAt, CreatedBy: t.CreatedBy,
		ScopeMap: wire.MapSlice(t.ScopeMap, func(e access.ScopeMapEntry) wire.ScopeMapEntry {
			return wire.ScopeMapEntry{Repository: e.Repository, Actions: e.Actions}
		})}
}

func scopeMapIn(in []wire.ScopeMapEntry) []access.ScopeMapEntry {
	return wire.MapSlice(in, func(e wire.ScopeMapEntry) access.ScopeMapEntry {
		return access.ScopeMapEntry{Repository: e.Repository, Actions: e.Actions}
	})
}

// AccessPolicy is p on the wire.
func AccessPolicy(p access.AccessPolicy) wire.AccessPolicy {
	return wire.AccessPolicy{Vault: p.Vault, ObjectID: p.ObjectID, KeyPermissions: p.KeyPermissions, UpdatedAt: p.UpdatedAt}
}
