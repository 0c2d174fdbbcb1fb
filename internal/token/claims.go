// Package token issues and verifies Coffer's access tokens: short-lived JWTs signed by a
// server key that rotates (kid), published as JWKS. One token service serves every API: the
// Docker registry token flow, OAuth2 client credentials, the Entra-ID-shaped OpenID Connect
// authority and the App Service managed-identity endpoint.
package token

import (
	"github.com/golang-jwt/jwt/v5"

	"github.com/cofferhq/coffer/internal/identity"
)

// AudienceManagement is the audience of tokens for Coffer's management API (the CLI).
const AudienceManagement = "coffer-management"

// RegistryService is the registry's "service" in the Docker token flow, and the audience of
// registry (and trust) tokens.
const RegistryService = "coffer-registry"

// VaultResource is the resource (audience) of vault tokens for a vault domain: a vault at
// NAME.<domain> asks for tokens for https://<domain>, like Azure's https://vault.azure.net.
func VaultResource(domain string) string { return "https://" + domain }

// Access is one Docker registry token grant ("access" claim).
type Access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// Claims are the claims of every token Coffer issues.
type Claims struct {
	jwt.RegisteredClaims
	// ObjectID is the principal's object id (Entra "oid").
	ObjectID string        `json:"oid"`
	TenantID string        `json:"tid,omitempty"`
	AppID    string        `json:"appid,omitempty"`
	Kind     identity.Kind `json:"kind"`
	Name     string        `json:"name,omitempty"`
	// Access is the Docker registry grant: exactly the scope that was granted.
	Access []Access `json:"access,omitempty"`
}

// Principal is the principal the token was issued to.
func (c *Claims) Principal() identity.Principal {
	return identity.Principal{ID: c.ObjectID, Kind: c.Kind, Name: c.Name, ClientID: c.AppID}
}
