package access

import (
	"fmt"
	"strings"
)

// Limits of the names a scope may carry.
const (
	maxRepositoryName = 255
	maxVaultName      = 63
	maxKeyName        = 127
)

// ParseScope validates a scope written by a user and returns its canonical form. It accepts
// the canonical path forms
//
//	/  /registry  /registry/repositories/<name>  /vaults/<vault>  /vaults/<vault>/keys/<key>
//
// and the short forms
//
//	registry  repository/<name>  vault/<vault>  vault/<vault>/key/<key>
//
// Repository names follow the OCI distribution grammar (lower case path components
// separated by '/'). Vault and key names are letters, digits and '-' and, like Azure Key
// Vault's, case-insensitive: the canonical scope carries them in lower case.
func ParseScope(s string) (Scope, error) {
	raw := s
	if raw == "" {
		return "", fmt.Errorf("empty scope: use /, /registry, /registry/repositories/NAME, /vaults/VAULT or /vaults/VAULT/keys/KEY")
	}
	if !strings.HasPrefix(s, "/") {
		return parseShortScope(raw)
	}
	if s == "/" {
		return ScopeRoot, nil
	}
	switch {
	case s == "/registry" || s == "/registry/":
		return ScopeRegistry, nil
	case strings.HasPrefix(s, "/registry/repositories/"):
		return repositoryScope(raw, strings.TrimPrefix(s, "/registry/repositories/"))
	case strings.HasPrefix(s, "/vaults/"):
		return vaultScope(raw, strings.TrimPrefix(s, "/vaults/"), "keys")
	}
	return "", fmt.Errorf("unknown scope %q: use /, /registry, /registry/repositories/NAME, /vaults/VAULT or /vaults/VAULT/keys/KEY (or registry, repository/NAME, vault/VAULT, vault/VAULT/key/KEY)", raw)
}

func parseShortScope(raw string) (Scope, error) {
	switch s := raw; {
	case s == "registry" || s == "registry/":
		return ScopeRegistry, nil
	case strings.HasPrefix(s, "repository/"):
		return repositoryScope(raw, strings.TrimPrefix(s, "repository/"))
	case strings.HasPrefix(s, "vault/"):
		return vaultScope(raw, strings.TrimPrefix(s, "vault/"), "key")
	}
	return "", fmt.Errorf("unknown scope %q: use registry, repository/NAME, vault/VAULT, vault/VAULT/key/KEY, or a path such as /vaults/VAULT", raw)
}

func repositoryScope(raw, name string) (Scope, error) {
	name = strings.TrimSuffix(name, "/")
	if err := ValidateRepositoryName(name); err != nil {
		return "", fmt.Errorf("scope %q: %w", raw, err)
	}
	return RepositoryScope(name), nil
}

// vaultScope parses "VAULT" or "VAULT/<keysWord>/KEY" (an optional trailing slash).
func vaultScope(raw, rest, keysWord string) (Scope, error) {
	parts := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	if err := validateVaultName(parts[0]); err != nil {
		return "", fmt.Errorf("scope %q: %w", raw, err)
	}
	vault := strings.ToLower(parts[0])
	switch {
	case len(parts) == 1:
		return VaultScope(vault), nil
	case parts[1] != keysWord:
		return "", fmt.Errorf("scope %q: only keys are below a vault: use %s/KEY", raw, keysWord)
	case len(parts) == 2:
		return "", fmt.Errorf("scope %q: empty key name", raw)
	case len(parts) > 3:
		return "", fmt.Errorf("scope %q: invalid key name %q: only letters, digits and '-'", raw, strings.Join(parts[2:], "/"))
	}
	if err := validateKeyName(parts[2]); err != nil {
		return "", fmt.Errorf("scope %q: %w", raw, err)
	}
	return KeyScope(vault, strings.ToLower(parts[2])), nil
}

// ValidateRepositoryName checks a repository name against the OCI distribution grammar:
// path components of lower-case letters and digits, joined inside a component by '.', '_',
// '__' or runs of '-', separated by '/'; at most 255 characters.
func ValidateRepositoryName(name string) error {
	if name == "" {
		return fmt.Errorf("empty repository name")
	}
	if len(name) > maxRepositoryName {
		return fmt.Errorf("repository name is %d characters long, at most %d are allowed", len(name), maxRepositoryName)
	}
	for _, comp := range strings.Split(name, "/") {
		if !validPathComponent(comp) {
			return fmt.Errorf("invalid repository name %q: components are lower-case letters and digits separated by '.', '_', '__' or '-', joined by '/'", name)
		}
	}
	return nil
}

// validPathComponent matches [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*.
func validPathComponent(c string) bool {
	if c == "" {
		return false
	}
	i := 0
	alnum := func() bool {
		start := i
		for i < len(c) && (c[i] >= 'a' && c[i] <= 'z' || c[i] >= '0' && c[i] <= '9') {
			i++
		}
		return i > start
	}
	if !alnum() {
		return false
	}
	for i < len(c) {
		switch {
		case c[i] == '.':
			i++
		case c[i] == '_':
			i++
			if i < len(c) && c[i] == '_' {
				i++
			}
		case c[i] == '-':
			for i < len(c) && c[i] == '-' {
				i++
			}
		default:
			return false
		}
		if !alnum() {
			return false
		}
	}
	return true
}

func validateVaultName(v string) error {
	if v == "" {
		return fmt.Errorf("empty vault name")
	}
	if len(v) > maxVaultName || !dnsLabelLike(v) {
		return fmt.Errorf("invalid vault name %q: 1-%d letters, digits and '-', not starting or ending with '-'", v, maxVaultName)
	}
	return nil
}

func validateKeyName(k string) error {
	if k == "" {
		return fmt.Errorf("empty key name")
	}
	if len(k) > maxKeyName {
		return fmt.Errorf("invalid key name %q: at most %d characters", k, maxKeyName)
	}
	for i := 0; i < len(k); i++ {
		if !isAlnum(k[i]) && k[i] != '-' {
			return fmt.Errorf("invalid key name %q: only letters, digits and '-'", k)
		}
	}
	return nil
}

func dnsLabelLike(s string) bool {
	if s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

// canonical returns the scope as grants are stored: vault and key names in lower case.
// It allocates only when the scope holds an upper-case letter.
func (s Scope) canonical() Scope {
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
