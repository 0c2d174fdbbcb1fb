package wire

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Limits of the names a scope may carry.
const (
	maxRepositoryName = 255
	maxVaultName      = 63
	maxKeyName        = 127
)

// ParseScope is the scope syntax of the management API (the scope of a role assignment),
// and its only implementation: the access part parses every scope it is given with it (as
// access.ParseScope), and the CLI and a console check and canonicalize a scope with it
// before sending it, so both ends agree by construction.
//
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
func ParseScope(s string) (string, error) {
	raw := s
	if raw == "" {
		return "", fmt.Errorf("empty scope: use /, /registry, /registry/repositories/NAME, /vaults/VAULT or /vaults/VAULT/keys/KEY")
	}
	if !strings.HasPrefix(s, "/") {
		return parseShortScope(raw)
	}
	if s == "/" {
		return "/", nil
	}
	switch {
	case s == "/registry" || s == "/registry/":
		return "/registry", nil
	case strings.HasPrefix(s, "/registry/repositories/"):
		return repositoryScope(raw, strings.TrimPrefix(s, "/registry/repositories/"))
	case strings.HasPrefix(s, "/vaults/"):
		return vaultScope(raw, strings.TrimPrefix(s, "/vaults/"), "keys")
	}
	return "", fmt.Errorf("unknown scope %q: use /, /registry, /registry/repositories/NAME, /vaults/VAULT or /vaults/VAULT/keys/KEY (or registry, repository/NAME, vault/VAULT, vault/VAULT/key/KEY)", raw)
}

func parseShortScope(raw string) (string, error) {
	switch s := raw; {
	case s == "registry" || s == "registry/":
		return "/registry", nil
	case strings.HasPrefix(s, "repository/"):
		return repositoryScope(raw, strings.TrimPrefix(s, "repository/"))
	case strings.HasPrefix(s, "vault/"):
		return vaultScope(raw, strings.TrimPrefix(s, "vault/"), "key")
	}
	return "", fmt.Errorf("unknown scope %q: use registry, repository/NAME, vault/VAULT, vault/VAULT/key/KEY, or a path such as /vaults/VAULT", raw)
}

func repositoryScope(raw, name string) (string, error) {
	name = strings.TrimSuffix(name, "/")
	if err := ValidateRepositoryName(name); err != nil {
		return "", fmt.Errorf("scope %q: %w", raw, err)
	}
	return "/registry/repositories/" + name, nil
}

// vaultScope parses "VAULT" or "VAULT/<keysWord>/KEY" (an optional trailing slash).
func vaultScope(raw, rest, keysWord string) (string, error) {
	parts := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	if err := ValidateVaultName(parts[0]); err != nil {
		return "", fmt.Errorf("scope %q: %w", raw, err)
	}
	vault := strings.ToLower(parts[0])
	switch {
	case len(parts) == 1:
		return "/vaults/" + vault, nil
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
	return "/vaults/" + vault + "/keys/" + strings.ToLower(parts[2]), nil
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

// ValidateVaultName checks a vault name: 1-63 letters, digits and '-', not starting or
// ending with '-'. Vault names are case-insensitive; the canonical form is lower case.
func ValidateVaultName(v string) error {
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

// ErrInvalid is wrapped by the errors of NormalizeScopeMap and ParseScopeMapEntry, as the
// access part wraps its own (the message reads the same: "invalid request: ...").
var ErrInvalid = errors.New("invalid request")

// Scope-map actions of repository tokens.
const (
	ScopeContentRead   = "content/read"
	ScopeContentWrite  = "content/write"
	ScopeContentDelete = "content/delete"
	ScopeMetadataRead  = "metadata/read"
	ScopeMetadataWrite = "metadata/write"
	// ScopeContentSign writes content-trust data (sign tags), beside content/write.
	ScopeContentSign = "content/sign"
)

// maxScopeMapEntries is how many repositories one scope map may name.
const maxScopeMapEntries = 100

// ScopeMapActionNames lists the scope-map actions in their canonical order.
func ScopeMapActionNames() []string {
	return []string{ScopeContentRead, ScopeContentWrite, ScopeContentDelete, ScopeMetadataRead, ScopeMetadataWrite, ScopeContentSign}
}

// NormalizeScopeMap validates a scope map and returns its canonical form: at least one and
// at most 100 entries, each a repository name (or "prefix/*") that appears once, with
// known actions (case-insensitive, duplicates dropped) in canonical order. It is the only
// implementation of the scope-map rules: the access part enforces them on every scope map
// the server is given (access.NormalizeScopeMap), whatever the client checked.
func NormalizeScopeMap(entries []ScopeMapEntry) ([]ScopeMapEntry, error) {
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: a repository token needs at least one repository, e.g. --repository app:content/read", ErrInvalid)
	}
	if len(entries) > maxScopeMapEntries {
		return nil, fmt.Errorf("%w: %d repositories in one scope map, at most %d", ErrInvalid, len(entries), maxScopeMapEntries)
	}
	names := ScopeMapActionNames()
	seen := map[string]bool{}
	out := make([]ScopeMapEntry, 0, len(entries))
	for _, e := range entries {
		repo := strings.TrimSpace(e.Repository)
		if seen[repo] {
			return nil, fmt.Errorf("%w: repository %q appears twice in the scope map: list all its actions once", ErrInvalid, repo)
		}
		seen[repo] = true
		var acts []string
		have := map[string]bool{}
		for _, a := range e.Actions {
			a = strings.ToLower(strings.TrimSpace(a))
			if a == "" || have[a] {
				continue
			}
			have[a] = true
			acts = append(acts, a)
		}
		if len(acts) == 0 {
			return nil, fmt.Errorf("%w: repository %q has no actions: use %s", ErrInvalid, repo, strings.Join(names, ", "))
		}
		base, wildcard := strings.CutSuffix(repo, "/*")
		if !wildcard {
			base = repo
		}
		if err := ValidateRepositoryName(base); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		// Report the first unknown action in the order given.
		for _, a := range acts {
			if !slices.Contains(names, a) {
				return nil, fmt.Errorf("%w: unknown scope-map action %q: use %s", ErrInvalid, a, strings.Join(names, ", "))
			}
		}
		var canon []string
		for _, n := range names {
			if have[n] {
				canon = append(canon, n)
			}
		}
		out = append(out, ScopeMapEntry{Repository: repo, Actions: canon})
	}
	return out, nil
}

// ParseScopeMapEntry parses the CLI form REPOSITORY:ACTION[,ACTION...] ("app:content/read"
// or "team/*:content/read") into a checked scope-map entry with its actions in canonical
// order (see NormalizeScopeMap).
func ParseScopeMapEntry(s string) (ScopeMapEntry, error) {
	repo, acts, ok := strings.Cut(s, ":")
	if !ok || repo == "" || acts == "" {
		return ScopeMapEntry{}, fmt.Errorf("%w: %q is not REPOSITORY:ACTIONS (e.g. app:content/read,content/write)", ErrInvalid, s)
	}
	entries, err := NormalizeScopeMap([]ScopeMapEntry{{Repository: repo, Actions: strings.Split(acts, ",")}})
	if err != nil {
		return ScopeMapEntry{}, err
	}
	return entries[0], nil
}
