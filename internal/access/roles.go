package access

import (
	"sort"
	"strings"
)

// Built-in role names.
const (
	RoleOwner                            = "Owner"
	RoleContributor                      = "Contributor"
	RoleReader                           = "Reader"
	RoleAcrPull                          = "AcrPull"
	RoleAcrPush                          = "AcrPush"
	RoleAcrDelete                        = "AcrDelete"
	RoleAcrImageSigner                   = "AcrImageSigner"
	RoleKeyVaultAdministrator            = "Key Vault Administrator"
	RoleKeyVaultCryptoOfficer            = "Key Vault Crypto Officer"
	RoleKeyVaultCryptoUser               = "Key Vault Crypto User"
	RoleKeyVaultCryptoServiceEncryptUser = "Key Vault Crypto Service Encryption User"
	RoleKeyVaultReader                   = "Key Vault Reader"
)

// RoleDefinition is a named set of actions. Actions may end in "*" (every action with that
// prefix; "*" alone is every action, including ones added in later versions); NotActions
// are removed from what Actions grant.
type RoleDefinition struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Actions     []Action `json:"actions"`
	NotActions  []Action `json:"notActions,omitempty"`
}

// Allows reports whether the role grants action.
func (d RoleDefinition) Allows(a Action) bool {
	for _, n := range d.NotActions {
		if matchAction(n, a) {
			return false
		}
	}
	for _, p := range d.Actions {
		if matchAction(p, a) {
			return true
		}
	}
	return false
}

// EffectiveActions lists the known actions the role grants, sorted.
func (d RoleDefinition) EffectiveActions() []Action {
	var out []Action
	for _, a := range KnownActions() {
		if d.Allows(a) {
			out = append(out, a)
		}
	}
	return out
}

func matchAction(pattern, a Action) bool {
	if p, ok := strings.CutSuffix(string(pattern), "*"); ok {
		return strings.HasPrefix(string(a), p)
	}
	return pattern == a
}

// KeyPermissionActions are the vault key data-plane actions, one per access-policy key
// permission, in the order Azure lists them.
func KeyPermissionActions() []Action {
	return []Action{
		KeyGet, KeyList, KeyCreate, KeyUpdate, KeyImport, KeyDelete, KeyRecover, KeyBackup,
		KeyRestore, KeyPurge, KeyWrap, KeyUnwrap, KeyEncrypt, KeyDecrypt, KeySign, KeyVerify,
		KeyRotate, KeyGetRotationPolicy, KeySetRotationPolicy,
	}
}

// KnownActions lists every action this version of Coffer asks about.
func KnownActions() []Action {
	out := []Action{
		RegistryPull, RegistryPush, RegistryDelete, RegistrySign, RegistryList, RegistryManage,
		RegistryMetadataWrite,
	}
	out = append(out, KeyPermissionActions()...)
	return append(out, VaultRead, VaultManage, IdentityRead, IdentityManage, AccessRead, AccessManage)
}

// BuiltinRoles returns the built-in role definitions (a fresh copy on each call).
//
// Meanings follow Azure's roles of the same names. Two deliberate differences: Owner and
// Contributor also grant key data-plane actions (in Azure they are management-plane only),
// so the bootstrap administrator can use a vault that uses RBAC; and Contributor cannot
// manage identities, because resetting a more privileged service principal's secret would
// be a way around "no access management".
func BuiltinRoles() []RoleDefinition {
	return []RoleDefinition{
		{
			Name:        RoleOwner,
			Description: "Full access to everything, including assigning roles, repository tokens and identities; signing content trust needs AcrImageSigner besides, as in Azure.",
			Actions:     []Action{"*"},
			NotActions:  []Action{RegistrySign},
		},
		{
			Name:        RoleContributor,
			Description: "Full access to the registry and vaults, but cannot assign roles, create repository tokens or manage identities.",
			Actions:     []Action{"*"},
			NotActions:  []Action{AccessManage, IdentityManage, RegistrySign},
		},
		{
			Name:        RoleReader,
			Description: "Read-only: pull images, list repositories, read vault properties, key metadata, identities and role assignments. No crypto operations.",
			Actions: []Action{
				RegistryPull, RegistryList, VaultRead, KeyGet, KeyList, KeyGetRotationPolicy,
				IdentityRead, AccessRead,
			},
		},
		{
			Name:        RoleAcrPull,
			Description: "Pull images and artifacts (and list repositories when assigned on the registry).",
			Actions:     []Action{RegistryPull, RegistryList},
		},
		{
			Name:        RoleAcrPush,
			Description: "Pull and push images and artifacts (and list repositories when assigned on the registry).",
			Actions:     []Action{RegistryPull, RegistryPush, RegistryList},
		},
		{
			Name:        RoleAcrDelete,
			Description: "Delete images, tags and artifacts.",
			Actions:     []Action{RegistryDelete},
		},
		{
			Name:        RoleAcrImageSigner,
			Description: "Sign images: write content-trust data.",
			Actions:     []Action{RegistrySign},
		},
		{
			Name:        RoleKeyVaultAdministrator,
			Description: "Every key data-plane operation in a vault, and read the vault's properties.",
			Actions:     []Action{"vault/keys/*", VaultRead},
		},
		{
			Name:        RoleKeyVaultCryptoOfficer,
			Description: "Every action on keys: create, import, update, delete, recover, backup, restore, purge, rotate, rotation policy and crypto operations.",
			Actions:     []Action{"vault/keys/*"},
		},
		{
			Name:        RoleKeyVaultCryptoUser,
			Description: "Read key metadata and use keys: encrypt, decrypt, wrap, unwrap, sign, verify.",
			Actions:     []Action{KeyGet, KeyList, KeyEncrypt, KeyDecrypt, KeyWrap, KeyUnwrap, KeySign, KeyVerify},
		},
		{
			Name:        RoleKeyVaultCryptoServiceEncryptUser,
			Description: "Read a key and wrap and unwrap with it: what a service (the registry, the KMS plugin) needs for a customer-managed key.",
			Actions:     []Action{KeyGet, KeyWrap, KeyUnwrap},
		},
		{
			Name:        RoleKeyVaultReader,
			Description: "Read vault properties and key metadata (get, list, rotation policy). No crypto operations.",
			Actions:     []Action{KeyGet, KeyList, KeyGetRotationPolicy, VaultRead},
		},
	}
}

// roleTable is the compiled form of the built-in roles a Service keeps.
type roleTable struct {
	byName map[string]*compiledRole // lower-case name
	// hint is, per known action, the least privileged built-in role that grants it.
	hint map[Action]string
}

type compiledRole struct {
	def     RoleDefinition
	actions map[Action]struct{} // known actions granted
}

func (r *compiledRole) allows(a Action) bool {
	if _, ok := r.actions[a]; ok {
		return true
	}
	// Actions this version does not know (added later) still follow the patterns.
	return r.def.Allows(a)
}

func newRoleTable() *roleTable {
	t := &roleTable{byName: map[string]*compiledRole{}, hint: map[Action]string{}}
	defs := BuiltinRoles()
	for _, d := range defs {
		c := &compiledRole{def: d, actions: map[Action]struct{}{}}
		for _, a := range d.EffectiveActions() {
			c.actions[a] = struct{}{}
		}
		t.byName[strings.ToLower(d.Name)] = c
	}
	// The hint for an action is the role granting it with the fewest actions.
	sorted := make([]*compiledRole, 0, len(defs))
	for _, d := range defs {
		sorted = append(sorted, t.byName[strings.ToLower(d.Name)])
	}
	sort.SliceStable(sorted, func(i, j int) bool { return len(sorted[i].actions) < len(sorted[j].actions) })
	for _, a := range KnownActions() {
		for _, r := range sorted {
			if _, ok := r.actions[a]; ok {
				t.hint[a] = r.def.Name
				break
			}
		}
	}
	return t
}

// lookup finds a built-in role by name, case-insensitively.
func (t *roleTable) lookup(name string) (*compiledRole, bool) {
	r, ok := t.byName[strings.ToLower(strings.TrimSpace(name))]
	return r, ok
}
