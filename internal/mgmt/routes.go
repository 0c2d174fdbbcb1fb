package mgmt

import (
	"net/http"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// Route is one route of the management API: what the OpenAPI document says of it, and
// what Router.Handle accepts.
type Route struct {
	// ID names the route (the OpenAPI operationId).
	ID     string
	Method string
	// Path is a net/http pattern path under Prefix: {name} is one segment, {name...} the
	// rest of the path.
	Path    string
	Tag     string
	Summary string
	// Permission is the action the caller needs, and where.
	Permission string
	// Query lists the query parameters the route reads.
	Query []Param
	// Request is the body's wire type (nil: no body); Response the answer's (nil: none).
	Request, Response any
	// Status is the status of a successful answer.
	Status int
	// Public routes are served without a bearer token.
	Public bool
	// Stream, when set, is the media type of a streamed answer the route gives when the
	// request accepts it (one Response-typed JSON document per line).
	Stream string
}

// Param is a query parameter.
type Param struct {
	Name, Description string
}

// Pattern is the route's net/http pattern: "GET /coffer/v1/...".
func (r Route) Pattern() string { return r.Method + " " + r.Path }

const (
	tagIdentity   = "identity"
	tagAccess     = "access"
	tagVault      = "vault"
	tagKey        = "key"
	tagAudit      = "audit"
	tagRegistry   = "registry"
	tagEncryption = "encryption"
	tagSignatures = "signatures"
	tagMeta       = "meta"
	tagKMS        = "kms"
)

var (
	pageParams = []Param{{"maxresults", "page size"}, {"skiptoken", "the skipToken of the previous page"}}
	versionQ   = []Param{{"version", "key version (default: the newest)"}}
)

// Routes is the route table of the management API: every route, in one place.
func Routes() []Route {
	const (
		ok, created, none = http.StatusOK, http.StatusCreated, http.StatusNoContent
		get, post, put    = http.MethodGet, http.MethodPost, http.MethodPut
		patch, del        = http.MethodPatch, http.MethodDelete
		p                 = Prefix
		key               = p + "/vaults/{vault}/keys/{key}"
		keyPerm           = "the key permission named in the summary, from an access policy or (RBAC vaults) a role"
	)
	return []Route{
		{ID: "openapi", Method: get, Path: p + "/openapi.json", Tag: tagMeta, Summary: "This document: the management API's OpenAPI 3 description", Status: ok, Public: true},

		// Identity.
		{ID: "whoami", Method: get, Path: p + "/whoami", Tag: tagIdentity, Summary: "The caller, its tenant and its token's expiry", Permission: "any authenticated caller", Response: wire.Whoami{}, Status: ok},
		{ID: "createUser", Method: post, Path: p + "/users", Tag: tagIdentity, Summary: "Create a user", Permission: "identity/manage at /", Request: wire.CreateUserRequest{}, Response: wire.Identity{}, Status: created},
		{ID: "listUsers", Method: get, Path: p + "/users", Tag: tagIdentity, Summary: "List users", Permission: "identity/read at /", Response: wire.List[wire.Identity]{}, Status: ok},
		{ID: "getUser", Method: get, Path: p + "/users/{ref}", Tag: tagIdentity, Summary: "Show a user (by name or object id)", Permission: "identity/read at /", Response: wire.Identity{}, Status: ok},
		{ID: "setPassword", Method: put, Path: p + "/users/{ref}/password", Tag: tagIdentity, Summary: "Change a user's password (revokes its refresh tokens)", Permission: "the user itself, or identity/manage at /", Request: wire.PasswordRequest{}, Status: none},
		{ID: "deleteUser", Method: del, Path: p + "/users/{ref}", Tag: tagIdentity, Summary: "Delete a user", Permission: "identity/manage at /", Status: none},
		{ID: "createServicePrincipal", Method: post, Path: p + "/servicePrincipals", Tag: tagIdentity, Summary: "Create a service principal with a client secret (shown once)", Permission: "identity/manage at /", Request: wire.CreateServicePrincipalRequest{}, Response: wire.ServicePrincipalCredentials{}, Status: created},
		{ID: "listServicePrincipals", Method: get, Path: p + "/servicePrincipals", Tag: tagIdentity, Summary: "List service principals", Permission: "identity/read at /", Response: wire.List[wire.Identity]{}, Status: ok},
		{ID: "getServicePrincipal", Method: get, Path: p + "/servicePrincipals/{ref}", Tag: tagIdentity, Summary: "Show a service principal (by name, object id or client id)", Permission: "identity/read at /", Response: wire.Identity{}, Status: ok},
		{ID: "resetCredential", Method: post, Path: p + "/servicePrincipals/{ref}/credentials/reset", Tag: tagIdentity, Summary: "Issue a new client secret (shown once)", Permission: "identity/manage at /", Request: wire.ResetCredentialRequest{}, Response: wire.ServicePrincipalCredentials{}, Status: ok},
		{ID: "deleteServicePrincipal", Method: del, Path: p + "/servicePrincipals/{ref}", Tag: tagIdentity, Summary: "Delete a service principal", Permission: "identity/manage at /", Status: none},
		{ID: "createManagedIdentity", Method: post, Path: p + "/managedIdentities", Tag: tagIdentity, Summary: "Create a user-assigned managed identity", Permission: "identity/manage at /", Request: wire.CreateManagedIdentityRequest{}, Response: wire.ManagedIdentity{}, Status: created},
		{ID: "listManagedIdentities", Method: get, Path: p + "/managedIdentities", Tag: tagIdentity, Summary: "List managed identities (with the registry's system-assigned one)", Permission: "identity/read at /", Response: wire.List[wire.ManagedIdentity]{}, Status: ok},
		{ID: "getManagedIdentity", Method: get, Path: p + "/managedIdentities/{ref}", Tag: tagIdentity, Summary: "Show a managed identity", Permission: "identity/read at /", Response: wire.ManagedIdentity{}, Status: ok},
		{ID: "deleteManagedIdentity", Method: del, Path: p + "/managedIdentities/{ref}", Tag: tagIdentity, Summary: "Delete a user-assigned managed identity", Permission: "identity/manage at /", Status: none},

		// Access.
		{ID: "listRoleDefinitions", Method: get, Path: p + "/role-definitions", Tag: tagAccess, Summary: "List the built-in roles", Permission: "any authenticated caller", Response: wire.List[wire.RoleDefinition]{}, Status: ok},
		{ID: "listRoleAssignments", Method: get, Path: p + "/role-assignments", Tag: tagAccess, Summary: "List the role assignments the caller may read", Permission: "access/read at the assignment's scope (a caller's own are always shown)",
			Query: []Param{{"assignee", "object id, client id or name"}, {"scope", "assignments that apply at this scope"}, {"role", "role name"}}, Response: wire.List[wire.RoleAssignment]{}, Status: ok},
		{ID: "createRoleAssignment", Method: post, Path: p + "/role-assignments", Tag: tagAccess, Summary: "Assign a role (200 with the existing assignment if it exists)", Permission: "access/manage at the scope", Request: wire.CreateRoleAssignmentRequest{}, Response: wire.RoleAssignment{}, Status: created},
		{ID: "getRoleAssignment", Method: get, Path: p + "/role-assignments/{id}", Tag: tagAccess, Summary: "Show a role assignment", Permission: "access/read at its scope, or the assignee itself", Response: wire.RoleAssignment{}, Status: ok},
		{ID: "deleteRoleAssignment", Method: del, Path: p + "/role-assignments/{id}", Tag: tagAccess, Summary: "Delete a role assignment", Permission: "access/manage at its scope", Status: none},
		{ID: "listTokens", Method: get, Path: p + "/tokens", Tag: tagAccess, Summary: "List repository tokens", Permission: "access/read at /registry", Response: wire.List[wire.RepositoryToken]{}, Status: ok},
		{ID: "createToken", Method: post, Path: p + "/tokens", Tag: tagAccess, Summary: "Create a repository token (its password is shown once)", Permission: "access/manage at /registry", Request: wire.CreateTokenRequest{}, Response: wire.CreateTokenResponse{}, Status: created},
		{ID: "getToken", Method: get, Path: p + "/tokens/{name}", Tag: tagAccess, Summary: "Show a repository token", Permission: "access/read at /registry", Response: wire.RepositoryToken{}, Status: ok},
		{ID: "deleteToken", Method: del, Path: p + "/tokens/{name}", Tag: tagAccess, Summary: "Delete a repository token", Permission: "access/manage at /registry", Status: none},
		{ID: "listAccessPolicies", Method: get, Path: p + "/vaults/{vault}/access-policies", Tag: tagAccess, Summary: "List a vault's access policies", Permission: "vault/read on the vault", Response: wire.List[wire.AccessPolicy]{}, Status: ok},
		{ID: "setAccessPolicy", Method: put, Path: p + "/vaults/{vault}/access-policies/{objectId}", Tag: tagAccess, Summary: "Set (replace) an identity's key permissions in a vault (audited)", Permission: "vault/manage on the vault", Request: wire.SetAccessPolicyRequest{}, Response: wire.AccessPolicy{}, Status: ok},
		{ID: "deleteAccessPolicy", Method: del, Path: p + "/vaults/{vault}/access-policies/{objectId}", Tag: tagAccess, Summary: "Remove an identity's access policy from a vault (audited)", Permission: "vault/manage on the vault", Status: none},

		// Vaults.
		{ID: "listVaults", Method: get, Path: p + "/vaults", Tag: tagVault, Summary: "List the vaults the caller may read", Permission: "vault/read on each vault listed", Response: wire.List[wire.Vault]{}, Status: ok},
		{ID: "createVault", Method: post, Path: p + "/vaults", Tag: tagVault, Summary: "Create a vault", Permission: "vault/manage on the vault", Request: wire.Vault{}, Response: wire.Vault{}, Status: created},
		{ID: "getVault", Method: get, Path: p + "/vaults/{vault}", Tag: tagVault, Summary: "Show a vault", Permission: "vault/read on the vault", Response: wire.Vault{}, Status: ok},
		{ID: "updateVault", Method: patch, Path: p + "/vaults/{vault}", Tag: tagVault, Summary: "Change a vault's properties", Permission: "vault/manage on the vault", Request: wire.VaultUpdate{}, Response: wire.Vault{}, Status: ok},
		{ID: "deleteVault", Method: del, Path: p + "/vaults/{vault}", Tag: tagVault, Summary: "Delete an empty vault", Permission: "vault/manage on the vault", Status: none},
		{ID: "restoreKey", Method: post, Path: p + "/vaults/{vault}/restore", Tag: tagKey, Summary: "Restore a key from a backup (restore)", Permission: keyPerm, Request: wire.KeyBackup{}, Response: wire.Key{}, Status: ok},

		// Keys.
		{ID: "listKeys", Method: get, Path: p + "/vaults/{vault}/keys", Tag: tagKey, Summary: "List a vault's keys, newest versions (list)", Permission: keyPerm, Query: pageParams, Response: wire.KeyList{}, Status: ok},
		{ID: "getKey", Method: get, Path: key, Tag: tagKey, Summary: "Show a key version (get)", Permission: keyPerm, Query: versionQ, Response: wire.Key{}, Status: ok},
		{ID: "importKey", Method: put, Path: key, Tag: tagKey, Summary: "Import a key as a new version (import)", Permission: keyPerm, Request: wire.ImportKeyRequest{}, Response: wire.Key{}, Status: ok},
		{ID: "updateKey", Method: patch, Path: key, Tag: tagKey, Summary: "Change a key version's attributes (update)", Permission: keyPerm, Query: versionQ, Request: wire.UpdateKeyRequest{}, Response: wire.Key{}, Status: ok},
		{ID: "deleteKey", Method: del, Path: key, Tag: tagKey, Summary: "Delete a key, soft (delete)", Permission: keyPerm, Response: wire.DeletedKey{}, Status: ok},
		{ID: "createKey", Method: post, Path: key + "/create", Tag: tagKey, Summary: "Create a key or a new version of it (create)", Permission: keyPerm, Request: wire.CreateKeyRequest{}, Response: wire.Key{}, Status: ok},
		{ID: "listKeyVersions", Method: get, Path: key + "/versions", Tag: tagKey, Summary: "List a key's versions (list)", Permission: keyPerm, Query: pageParams, Response: wire.KeyList{}, Status: ok},
		{ID: "rotateKey", Method: post, Path: key + "/rotate", Tag: tagKey, Summary: "Create a new version of a key (rotate)", Permission: keyPerm, Response: wire.Key{}, Status: ok},
		{ID: "getRotationPolicy", Method: get, Path: key + "/rotationpolicy", Tag: tagKey, Summary: "Show a key's rotation policy (getrotationpolicy)", Permission: keyPerm, Response: wire.RotationPolicy{}, Status: ok},
		{ID: "setRotationPolicy", Method: put, Path: key + "/rotationpolicy", Tag: tagKey, Summary: "Set a key's rotation policy (setrotationpolicy)", Permission: keyPerm, Request: wire.RotationPolicy{}, Response: wire.RotationPolicy{}, Status: ok},
		{ID: "backupKey", Method: post, Path: key + "/backup", Tag: tagKey, Summary: "Back up a key, every version, sealed (backup)", Permission: keyPerm, Response: wire.KeyBackup{}, Status: ok},
		{ID: "keyOperation", Method: post, Path: key + "/{op}", Tag: tagKey, Summary: "Use a key: op is wrapkey, unwrapkey, encrypt, decrypt, sign or verify (the permission of that name)", Permission: keyPerm, Request: wire.KeyOpRequest{}, Response: wire.KeyOpResult{}, Status: ok},
		{ID: "listDeletedKeys", Method: get, Path: p + "/vaults/{vault}/deletedkeys", Tag: tagKey, Summary: "List deleted keys (list)", Permission: keyPerm, Query: pageParams, Response: wire.DeletedKeyList{}, Status: ok},
		{ID: "getDeletedKey", Method: get, Path: p + "/vaults/{vault}/deletedkeys/{key}", Tag: tagKey, Summary: "Show a deleted key (get)", Permission: keyPerm, Response: wire.DeletedKey{}, Status: ok},
		{ID: "purgeDeletedKey", Method: del, Path: p + "/vaults/{vault}/deletedkeys/{key}", Tag: tagKey, Summary: "Destroy a deleted key for good (purge)", Permission: keyPerm, Status: none},
		{ID: "recoverDeletedKey", Method: post, Path: p + "/vaults/{vault}/deletedkeys/{key}/recover", Tag: tagKey, Summary: "Recover a deleted key (recover)", Permission: keyPerm, Response: wire.Key{}, Status: ok},

		// Audit.
		{ID: "listAudit", Method: get, Path: p + "/audit", Tag: tagAudit, Summary: "List audit records, oldest first", Permission: "vault/read on the vault filtered on, or at / for the whole trail",
			Query: []Param{{"vault", "only this vault"}, {"key", "only this key"}, {"identity", "only this principal"}, {"operation", "operation name"}, {"result", "success, denied or failure"},
				{"since", "RFC 3339 time or a duration ago (1h)"}, {"until", "RFC 3339 time or a duration ago"}, {"limit", "at most this many"}, {"after", "records after this sequence number"}},
			Response: wire.List[wire.AuditRecord]{}, Status: ok},
		{ID: "verifyAudit", Method: get, Path: p + "/audit/verify", Tag: tagAudit, Summary: "Verify the audit trail's keyed hash chain, its signed head and checkpoint", Permission: "vault/read at /",
			Query: []Param{{"expectHead", "SEQ:HASH, a head kept from an earlier verify: fails if the trail does not reach it or holds another record there"}}, Response: wire.AuditVerifyResult{}, Status: ok},

		// Registry.
		{ID: "listRepositories", Method: get, Path: p + "/registry/repositories", Tag: tagRegistry, Summary: "List repositories", Permission: "registry/list at /registry",
			Query: []Param{{"last", "the next value of the previous page"}, {"n", "page size"}}, Response: wire.RepositoryList{}, Status: ok},
		{ID: "getRepository", Method: get, Path: p + "/registry/repositories/{name...}", Tag: tagRegistry, Summary: "Show a repository", Permission: "registry/pull on the repository", Response: wire.Repository{}, Status: ok},
		{ID: "deleteRepository", Method: del, Path: p + "/registry/repositories/{name...}", Tag: tagRegistry, Summary: "Delete a repository", Permission: "registry/delete on the repository", Status: none},
		{ID: "listTags", Method: get, Path: p + "/registry/tags", Tag: tagRegistry, Summary: "List a repository's tags", Permission: "registry/pull on the repository",
			Query: []Param{{"repository", "repository name (required)"}}, Response: wire.TagList{}, Status: ok},
		{ID: "deleteTag", Method: del, Path: p + "/registry/tags", Tag: tagRegistry, Summary: "Delete a tag", Permission: "registry/delete on the repository",
			Query: []Param{{"repository", "repository name (required)"}, {"tag", "tag (required)"}}, Status: none},
		{ID: "collectGarbage", Method: post, Path: p + "/registry/gc", Tag: tagRegistry, Summary: "Collect garbage; with Accept: application/x-ndjson, stream GCEvent lines then the report", Permission: "registry/manage at /registry",
			Query: []Param{{"dryRun", "report only"}}, Response: wire.GCReport{}, Status: ok, Stream: "application/x-ndjson"},

		// Encryption at rest.
		{ID: "getContentTrust", Method: get, Path: p + "/registry/config/content-trust", Tag: tagRegistry, Summary: "Show the registry's content-trust policy (Notary v1 / Docker Content Trust)", Permission: "registry/list at /registry", Response: wire.ContentTrustPolicy{}, Status: ok},
		{ID: "updateContentTrust", Method: patch, Path: p + "/registry/config/content-trust", Tag: tagRegistry, Summary: "Enable or disable content trust; disabling deletes all Notary v1 trust data and server-held trust keys", Permission: "registry/manage at /registry", Request: wire.ContentTrustUpdate{}, Response: wire.ContentTrustUpdated{}, Status: ok},
		{ID: "getEncryption", Method: get, Path: p + "/registry/encryption", Tag: tagEncryption, Summary: "Show the registry's encryption at rest, checking key access now", Permission: "registry/manage at /registry", Response: wire.EncryptionStatus{}, Status: ok},
		{ID: "enableEncryption", Method: post, Path: p + "/registry/encryption/enable", Tag: tagEncryption, Summary: "Encrypt under a customer-managed key (cannot be undone)", Permission: "registry/manage at /registry", Request: wire.EncryptionKeyRequest{}, Response: wire.EncryptionStatus{}, Status: ok},
		{ID: "rotateEncryptionKey", Method: post, Path: p + "/registry/encryption/rotate-key", Tag: tagEncryption, Summary: "Re-wrap the root key under another key, version or identity", Permission: "registry/manage at /registry", Request: wire.EncryptionKeyRequest{}, Response: wire.EncryptionStatus{}, Status: ok},
		{ID: "disableEncryption", Method: post, Path: p + "/registry/encryption/disable", Tag: tagEncryption, Summary: "Refused with 409: a customer-managed key cannot be disabled", Permission: "registry/manage at /registry", Status: none},
		{ID: "newEncryptionRootKey", Method: post, Path: p + "/registry/encryption/root-key", Tag: tagEncryption, Summary: "Seal new content under a fresh root key (a new generation); older content stays readable", Permission: "registry/manage at /registry", Response: wire.EncryptionStatus{}, Status: ok},
		{ID: "checkEncryptionRotation", Method: post, Path: p + "/registry/encryption/rotation", Tag: tagEncryption, Summary: "Run the automatic key rotation check now", Permission: "registry/manage at /registry", Response: wire.EncryptionStatus{}, Status: ok},

		// Signature policy.
		{ID: "listSignatureAnchors", Method: get, Path: p + "/registry/signatures/anchors", Tag: tagSignatures, Summary: "List the signature trust anchors (notation trust stores, cosign keys)", Permission: "access/read at /registry", Response: wire.List[wire.SignatureAnchor]{}, Status: ok},
		{ID: "getSignatureAnchor", Method: get, Path: p + "/registry/signatures/anchors/{name}", Tag: tagSignatures, Summary: "Show a signature trust anchor", Permission: "access/read at /registry", Response: wire.SignatureAnchor{}, Status: ok},
		{ID: "addSignatureAnchor", Method: post, Path: p + "/registry/signatures/anchors", Tag: tagSignatures, Summary: "Add a signature trust anchor (audited)", Permission: "access/manage at /registry", Request: wire.SignatureAnchor{}, Response: wire.SignatureAnchor{}, Status: created},
		{ID: "refreshSignatureAnchor", Method: post, Path: p + "/registry/signatures/anchors/{name}/refresh", Tag: tagSignatures, Summary: "Re-read a cosign anchor's key from its vault now (audited)", Permission: "access/manage at /registry", Response: wire.SignatureAnchorRefresh{}, Status: ok},
		{ID: "deleteSignatureAnchor", Method: del, Path: p + "/registry/signatures/anchors/{name}", Tag: tagSignatures, Summary: "Delete a signature trust anchor: images signed only under it stop verifying (audited)", Permission: "access/manage at /registry", Status: none},
		{ID: "getSignaturePolicy", Method: get, Path: p + "/registry/signatures/policy", Tag: tagSignatures, Summary: "Show the signature policy", Permission: "access/read at /registry", Response: wire.SignaturePolicy{}, Status: ok},
		{ID: "setSignaturePolicy", Method: put, Path: p + "/registry/signatures/policy", Tag: tagSignatures, Summary: "Replace the signature policy (audited)", Permission: "access/manage at /registry", Request: wire.SignaturePolicy{}, Response: wire.SignaturePolicy{}, Status: ok},
		{ID: "getSignatureVerification", Method: get, Path: p + "/registry/signatures/verification", Tag: tagSignatures, Summary: "Judge one manifest under the current signature policy", Permission: "registry/pull on the repository",
			Query: []Param{{"repository", "repository name (required)"}, {"reference", "tag or digest (required)"}}, Response: wire.SignatureVerification{}, Status: ok},
		// Kubernetes KMS v2 cluster settings (docs/kms.md).
		{ID: "createKMSCluster", Method: post, Path: p + "/kms/clusters", Tag: tagKMS, Summary: "Configure a cluster's KMS v2 key (PMK created, CMK checked as the plugin's identity)", Permission: "vault/manage at /", Request: wire.KMSClusterRequest{}, Response: wire.KMSCluster{}, Status: created},
		{ID: "listKMSClusters", Method: get, Path: p + "/kms/clusters", Tag: tagKMS, Summary: "List the clusters' KMS v2 settings", Permission: "vault/read at /", Response: wire.List[wire.KMSCluster]{}, Status: ok},
		{ID: "getKMSCluster", Method: get, Path: p + "/kms/clusters/{name}", Tag: tagKMS, Summary: "Show a cluster's securityProfile, keys and plugin status", Permission: "vault/read at /", Response: wire.KMSCluster{}, Status: ok},
		{ID: "updateKMSCluster", Method: patch, Path: p + "/kms/clusters/{name}", Tag: tagKMS, Summary: "Change a cluster's key (the previous one stays decrypt-only)", Permission: "vault/manage at /", Request: wire.KMSClusterRequest{}, Response: wire.KMSCluster{}, Status: ok},
		{ID: "deleteKMSCluster", Method: del, Path: p + "/kms/clusters/{name}", Tag: tagKMS, Summary: "Remove a cluster's settings (its keys stay)", Permission: "vault/manage at /", Status: none},
		{ID: "rotateKMSCluster", Method: post, Path: p + "/kms/clusters/{name}/rotate", Tag: tagKMS, Summary: "Make a new version of the cluster's platform-managed key now", Permission: "vault/manage at /", Response: wire.KMSCluster{}, Status: ok},
		{ID: "retireKMSKeys", Method: post, Path: p + "/kms/clusters/{name}/retire", Tag: tagKMS, Summary: "Mark decrypt-only keys retirable after every resource was rewritten", Permission: "vault/manage at /", Request: wire.KMSRetireRequest{}, Response: wire.KMSCluster{}, Status: ok},
		{ID: "getKMSPluginSettings", Method: get, Path: p + "/kms/clusters/{name}/plugin", Tag: tagKMS, Summary: "The settings the cluster's plugin runs with", Permission: "the cluster's plugin identity", Response: wire.KMSPluginSettings{}, Status: ok},
		{ID: "reportKMSPluginStatus", Method: put, Path: p + "/kms/clusters/{name}/plugin/status", Tag: tagKMS, Summary: "The plugin reports its last Status", Permission: "the cluster's plugin identity", Request: wire.KMSPluginStatus{}, Status: none},
		{ID: "getKMSPluginKey", Method: get, Path: p + "/kms/clusters/{name}/plugin/key", Tag: tagKMS, Summary: "Read a key of the cluster as the plugin (through Coffer)", Permission: "the cluster's plugin identity, and get on the key", Query: []Param{{"keyId", "the key id"}}, Response: wire.KMSKeyInfo{}, Status: ok},
		{ID: "wrapKMSPluginKey", Method: post, Path: p + "/kms/clusters/{name}/plugin/wrapkey", Tag: tagKMS, Summary: "Wrap a seed as the plugin (through Coffer, as a Coffer service)", Permission: "the cluster's plugin identity, and wrapKey on the key", Request: wire.KMSWrapRequest{}, Response: wire.KMSWrapResponse{}, Status: ok},
		{ID: "unwrapKMSPluginKey", Method: post, Path: p + "/kms/clusters/{name}/plugin/unwrapkey", Tag: tagKMS, Summary: "Unwrap a seed as the plugin (through Coffer, as a Coffer service)", Permission: "the cluster's plugin identity, and unwrapKey on the key", Request: wire.KMSWrapRequest{}, Response: wire.KMSWrapResponse{}, Status: ok},
	}
}
