// Package identity owns who can act in Coffer: users, service principals, managed
// identities (user-assigned and the registry's system-assigned one) and repository-scoped
// tokens, with their credentials.
package identity

// Kind is the kind of a principal.
type Kind string

const (
	KindUser             Kind = "user"
	KindServicePrincipal Kind = "servicePrincipal"
	// KindManagedIdentity is a user-assigned managed identity, created by name.
	KindManagedIdentity Kind = "managedIdentity"
	// KindSystemIdentity is the registry's own system-assigned identity.
	KindSystemIdentity Kind = "systemAssignedIdentity"
	// KindRepositoryToken is a repository-scoped token (scope map) for CI systems.
	KindRepositoryToken Kind = "repositoryToken"
)

// Principal is an authenticated caller as every part sees it.
type Principal struct {
	// ID is the principal's object id (a UUID), stable for its lifetime. Role assignments
	// and access policies name principals by this id.
	ID   string `json:"id"`
	Kind Kind   `json:"kind"`
	Name string `json:"name"`
	// ClientID (application id) for service principals and managed identities.
	ClientID string `json:"clientId,omitempty"`
}
