package wire

import "time"

// RoleDefinition is a built-in role: its action patterns and the actions they come to in
// this version (GET /role-definitions).
type RoleDefinition struct {
	Name             string   `json:"name"`
	Description      string   `json:"description"`
	Actions          []string `json:"actions"`
	NotActions       []string `json:"notActions,omitempty"`
	EffectiveActions []string `json:"effectiveActions"`
}

// RoleAssignment gives a role to a principal at a scope.
type RoleAssignment struct {
	ID            string    `json:"id"`
	Role          string    `json:"role"`
	PrincipalID   string    `json:"principalId"`
	PrincipalKind string    `json:"principalKind,omitempty"`
	PrincipalName string    `json:"principalName,omitempty"`
	Scope         string    `json:"scope"`
	CreatedAt     time.Time `json:"createdAt"`
	CreatedBy     string    `json:"createdBy,omitempty"`
}

// CreateRoleAssignmentRequest is the body of POST /role-assignments.
type CreateRoleAssignmentRequest struct {
	Role string `json:"role"`
	// Assignee is an object id, client id or name.
	Assignee string `json:"assignee"`
	// Scope in canonical (/vaults/v) or short (vault/v) form (see ParseScope).
	Scope string `json:"scope"`
}

// ScopeMapEntry grants scope-map actions on one repository, or on every repository under
// a prefix when Repository ends in "/*".
type ScopeMapEntry struct {
	Repository string   `json:"repository"`
	Actions    []string `json:"actions"`
}

// RepositoryToken is a repository-scoped registry credential whose only rights are its
// scope map.
type RepositoryToken struct {
	Name      string          `json:"name"`
	ObjectID  string          `json:"objectId"`
	ScopeMap  []ScopeMapEntry `json:"scopeMap"`
	CreatedAt time.Time       `json:"createdAt"`
	CreatedBy string          `json:"createdBy,omitempty"`
}

// CreateTokenRequest is the body of POST /tokens.
type CreateTokenRequest struct {
	Name     string          `json:"name"`
	ScopeMap []ScopeMapEntry `json:"scopeMap"`
}

// CreateTokenResponse is the answer of POST /tokens: the password is shown once.
type CreateTokenResponse struct {
	RepositoryToken
	Password string `json:"password"`
}

// AccessPolicy is one identity's key permissions in one vault.
type AccessPolicy struct {
	Vault          string    `json:"vault"`
	ObjectID       string    `json:"objectId"`
	KeyPermissions []string  `json:"keyPermissions"`
	UpdatedAt      time.Time `json:"updatedAt"`
}

// SetAccessPolicyRequest is the body of PUT /vaults/{vault}/access-policies/{objectId}.
type SetAccessPolicyRequest struct {
	KeyPermissions []string `json:"keyPermissions"`
}
