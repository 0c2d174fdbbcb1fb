package access

import (
	"strings"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// ParseScope validates a scope written by a user and returns its canonical form: the
// canonical path forms
//
//	/  /registry  /registry/repositories/<name>  /vaults/<vault>  /vaults/<vault>/keys/<key>
//
// or the short forms
//
//	registry  repository/<name>  vault/<vault>  vault/<vault>/key/<key>
//
// The grammar is the management contract's (wire.ParseScope, its only implementation), so
// the server, the CLI and a console accept and canonicalize the same scopes with the same
// messages.
func ParseScope(s string) (Scope, error) {
	scope, err := wire.ParseScope(s)
	if err != nil {
		return "", err
	}
	return Scope(scope), nil
}

// ValidateRepositoryName checks a repository name against the OCI distribution grammar
// (wire.ValidateRepositoryName): path components of lower-case letters and digits, joined
// inside a component by '.', '_', '__' or runs of '-', separated by '/'; at most 255
// characters.
func ValidateRepositoryName(name string) error {
	return wire.ValidateRepositoryName(name)
}

// canonical returns the scope as grants are stored: vault and key names in lower case
// (they are case-insensitive, as in Azure Key Vault). Repository names are not folded: the
// OCI grammar allows only lower case, so an upper-case repository names no repository and
// is refused by Authorize instead of landing on the lower-case one. It allocates only when
// a vault scope holds an upper-case letter.
func (s Scope) canonical() Scope {
	if !strings.HasPrefix(string(s), "/vaults/") {
		return s
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			return Scope(strings.ToLower(string(s)))
		}
	}
	return s
}

// vaultOf returns the vault a scope lies in ("" when it is not a vault scope).
func (s Scope) vaultOf() string {
	rest, ok := strings.CutPrefix(string(s), "/vaults/")
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, "/")
	return v
}

// repositoryOf returns the repository of a repository scope ("" otherwise).
func (s Scope) repositoryOf() string {
	name, ok := strings.CutPrefix(string(s), "/registry/repositories/")
	if !ok {
		return ""
	}
	return name
}
