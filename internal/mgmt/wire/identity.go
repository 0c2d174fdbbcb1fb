package wire

import "time"

// Principal kinds.
const (
	KindUser             = "user"
	KindServicePrincipal = "servicePrincipal"
	KindManagedIdentity  = "managedIdentity"
	KindSystemIdentity   = "systemAssignedIdentity"
	KindRepositoryToken  = "repositoryToken"
)

// Principal is an identity: its object id, kind, name and (service principals and managed
// identities) client id.
type Principal struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	ClientID string `json:"clientId,omitempty"`
}

// Identity is a user, service principal or managed identity as GET /users/{ref} and
// GET /servicePrincipals/{ref} show it.
type Identity struct {
	Principal
	CreatedAt time.Time `json:"createdAt"`
	// Credentials are a service principal's client secrets (never their values).
	Credentials []Credential `json:"credentials,omitempty"`
}

// Credential describes one client secret of a service principal.
type Credential struct {
	ID        string    `json:"id"`
	Hint      string    `json:"hint"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Whoami is the answer of GET /whoami: the caller, its tenant and when its token expires.
type Whoami struct {
	Principal
	TenantID  string    `json:"tenantId"`
	ExpiresAt time.Time `json:"tokenExpiresAt"`
}

// CreateUserRequest is the body of POST /users.
type CreateUserRequest struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// PasswordRequest is the body of PUT /users/{ref}/password. A user changing their own
// password gives the current one; someone allowed to manage identities changing another
// user's needs none.
type PasswordRequest struct {
	Password        string `json:"password"`
	CurrentPassword string `json:"currentPassword,omitempty"`
}

// CreateServicePrincipalRequest is the body of POST /servicePrincipals.
type CreateServicePrincipalRequest struct {
	Name string `json:"name"`
	// SecretLifetimeDays is the client secret's lifetime (default 365, at most 3650).
	SecretLifetimeDays int `json:"secretLifetimeDays,omitempty"`
}

// ResetCredentialRequest is the body of POST /servicePrincipals/{ref}/credentials/reset.
type ResetCredentialRequest struct {
	// Append keeps the existing secrets (otherwise they are removed).
	Append             bool `json:"append,omitempty"`
	SecretLifetimeDays int  `json:"secretLifetimeDays,omitempty"`
}

// ServicePrincipalCredentials is the answer of creating a service principal or resetting
// its credential: the secret appears here once and never again.
type ServicePrincipalCredentials struct {
	ServicePrincipal Identity  `json:"servicePrincipal"`
	TenantID         string    `json:"tenantId"`
	ClientID         string    `json:"clientId"`
	ClientSecret     string    `json:"clientSecret"`
	SecretID         string    `json:"secretId"`
	SecretExpiresAt  time.Time `json:"secretExpiresAt"`
}

// CreateManagedIdentityRequest is the body of POST /managedIdentities.
type CreateManagedIdentityRequest struct {
	Name string `json:"name"`
}

// ManagedIdentity is a managed identity with the ids Azure names principalId (the object
// id) and clientId.
type ManagedIdentity struct {
	Identity
	PrincipalID string `json:"principalId"`
	TenantID    string `json:"tenantId"`
}
