// Package access decides who may do what: built-in roles, role assignments at a scope,
// vault access policies and the scope maps of repository-scoped tokens. Every API (the
// registry, the vault, the trust service, management) asks the one Authorize function.
package access

import (
	"context"
	"errors"
	"strings"

	"github.com/cofferhq/coffer/internal/identity"
)

// Scope names what an action applies to, as a path. A grant at a scope covers every scope
// below it.
//
//	/                                   everything
//	/registry                           the registry
//	/registry/repositories/<name>       one repository (name may contain slashes)
//	/vaults/<vault>                     one vault
//	/vaults/<vault>/keys/<key>          one key
type Scope string

const (
	ScopeRoot     Scope = "/"
	ScopeRegistry Scope = "/registry"
)

// RepositoryScope is the scope of one repository.
func RepositoryScope(name string) Scope { return Scope("/registry/repositories/" + name) }

// VaultScope is the scope of one vault.
func VaultScope(vault string) Scope { return Scope("/vaults/" + vault) }

// KeyScope is the scope of one key in a vault.
func KeyScope(vault, key string) Scope { return Scope("/vaults/" + vault + "/keys/" + key) }

// Covers reports whether a grant at s applies to target.
func (s Scope) Covers(target Scope) bool {
	if s == ScopeRoot || s == target {
		return true
	}
	return strings.HasPrefix(string(target), string(s)+"/")
}

// Action is one thing a principal may do.
type Action string

// Registry actions.
const (
	RegistryPull   Action = "registry/pull"
	RegistryPush   Action = "registry/push"
	RegistryDelete Action = "registry/delete"
	RegistrySign   Action = "registry/sign"   // write trust data (content trust signer)
	RegistryList   Action = "registry/list"   // catalog
	RegistryManage Action = "registry/manage" // gc, encryption settings
	// RegistryMetadataWrite changes a repository's attributes (the metadata/write
	// permission of repository-token scope maps). Reserved: no registry operation asks for
	// it yet.
	RegistryMetadataWrite Action = "registry/metadata/write"
)

// Vault data-plane actions: one per access-policy key permission, named like it.
const (
	KeyGet                Action = "vault/keys/get"
	KeyList               Action = "vault/keys/list"
	KeyCreate             Action = "vault/keys/create"
	KeyUpdate             Action = "vault/keys/update"
	KeyImport             Action = "vault/keys/import"
	KeyDelete             Action = "vault/keys/delete"
	KeyRecover            Action = "vault/keys/recover"
	KeyBackup             Action = "vault/keys/backup"
	KeyRestore            Action = "vault/keys/restore"
	KeyPurge              Action = "vault/keys/purge"
	KeyWrap               Action = "vault/keys/wrapKey"
	KeyUnwrap             Action = "vault/keys/unwrapKey"
	KeyEncrypt            Action = "vault/keys/encrypt"
	KeyDecrypt            Action = "vault/keys/decrypt"
	KeySign               Action = "vault/keys/sign"
	KeyVerify             Action = "vault/keys/verify"
	KeyRotate             Action = "vault/keys/rotate"
	KeyGetRotationPolicy  Action = "vault/keys/getrotationpolicy"
	KeySetRotationPolicy  Action = "vault/keys/setrotationpolicy"
	VaultRead             Action = "vault/read"   // vault properties, audit
	VaultManage           Action = "vault/manage" // create/update/delete vaults, policies, rules
	IdentityRead          Action = "identity/read"
	IdentityManage        Action = "identity/manage" // users, service principals, managed identities
	AccessRead            Action = "access/read"
	AccessManage          Action = "access/manage" // role assignments, repository tokens
	KeyPermissionsAllName        = "all"
)

// Request is one authorization question.
type Request struct {
	Principal identity.Principal
	Action    Action
	Scope     Scope
	// VaultUsesPolicies is set by the vault for key data-plane actions when the vault's
	// access model is access policies (enableRbacAuthorization=false): the decision then
	// uses the vault's access policies instead of RBAC role assignments.
	VaultUsesPolicies bool
}

// ErrDenied is wrapped by every refusal; the message says which permission is missing.
var ErrDenied = errors.New("access denied")

// Authorizer answers authorization requests. nil means allowed; a refusal wraps ErrDenied.
type Authorizer interface {
	Authorize(ctx context.Context, req Request) error
}
