package token

import (
	"fmt"
	"strings"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// Scope is one requested resource scope of the Docker registry token flow:
//
//	resourcetype[(class)]:resourcename:action[,action...]
//
// for example repository:library/alpine:pull,push or registry:catalog:*. The resource
// name may itself hold a colon (a host:port prefix), so the type ends at the first colon
// and the actions start after the last one.
type Scope struct {
	Type    string
	Class   string
	Name    string
	Actions []string
	// Repository is the repository a repository scope refers to: Name, or Name without
	// its host when Name is a content-trust GUN of this registry ("host:port/team/app").
	Repository string
}

// repository is the repository name grants are decided on.
func (s Scope) repository() string {
	if s.Repository != "" {
		return s.Repository
	}
	return s.Name
}

// String is the scope in its wire form.
func (s Scope) String() string {
	t := s.Type
	if s.Class != "" {
		t += "(" + s.Class + ")"
	}
	return t + ":" + s.Name + ":" + strings.Join(s.Actions, ",")
}

const (
	maxScopes       = 64
	maxScopeNameLen = 512
)

// ParseScopes parses the scope parameters of a token request. Each value may hold several
// scopes separated by spaces (docker sends repeated parameters, the OAuth2 form joins them).
func ParseScopes(values []string) ([]Scope, error) {
	var out []Scope
	for _, v := range values {
		for _, f := range strings.Fields(v) {
			if len(out) == maxScopes {
				return nil, fmt.Errorf("too many scopes (at most %d)", maxScopes)
			}
			sc, err := ParseScope(f)
			if err != nil {
				return nil, err
			}
			out = append(out, sc)
		}
	}
	return out, nil
}

// ParseRegistryScopes parses the scope parameters of a registry token request, as
// ParseScopes, and refuses repository names the registry refuses (upper case, over 255
// characters, a host:port prefix, anything outside the OCI distribution grammar): a token
// for a repository that cannot exist would only hide the client's mistake. The one
// prefixed name accepted is a content-trust GUN, "<host[:port]>/<repository>", whose
// host ownHost says is this registry's (docker and notary ask for the GUN's scope);
// its grants are decided on the repository.
func ParseRegistryScopes(values []string, ownHost func(hostport string) bool) ([]Scope, error) {
	scopes, err := ParseScopes(values)
	if err != nil {
		return nil, err
	}
	for i, sc := range scopes {
		if sc.Type != "repository" {
			continue
		}
		if host, repo, ok := strings.Cut(sc.Name, "/"); ok && ownHost != nil && ownHost(host) && wire.ValidateRepositoryName(repo) == nil {
			scopes[i].Repository = repo
			continue
		}
		if err := wire.ValidateRepositoryName(sc.Name); err != nil {
			return nil, fmt.Errorf("scope %q: %w", clip(sc.String()), err)
		}
	}
	return scopes, nil
}

// ParseScope parses one scope.
func ParseScope(s string) (Scope, error) {
	typ, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Scope{}, fmt.Errorf("scope %q: want type:name:actions", clip(s))
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return Scope{}, fmt.Errorf("scope %q: want type:name:actions", clip(s))
	}
	name, actions := rest[:i], rest[i+1:]
	var sc Scope
	if open := strings.IndexByte(typ, '('); open >= 0 {
		if !strings.HasSuffix(typ, ")") || open == 0 {
			return Scope{}, fmt.Errorf("scope %q: bad resource class", clip(s))
		}
		sc.Type, sc.Class = typ[:open], typ[open+1:len(typ)-1]
		if !isWord(sc.Class) {
			return Scope{}, fmt.Errorf("scope %q: bad resource class", clip(s))
		}
	} else {
		sc.Type = typ
	}
	if !isWord(sc.Type) {
		return Scope{}, fmt.Errorf("scope %q: bad resource type", clip(s))
	}
	if name == "" || len(name) > maxScopeNameLen || !validResourceName(name) {
		return Scope{}, fmt.Errorf("scope %q: bad resource name", clip(s))
	}
	sc.Name = name
	seen := map[string]bool{}
	for _, a := range strings.Split(actions, ",") {
		if a == "" {
			continue
		}
		if a != "*" && !isWord(a) {
			return Scope{}, fmt.Errorf("scope %q: bad action %q", clip(s), clip(a))
		}
		if !seen[a] {
			seen[a] = true
			sc.Actions = append(sc.Actions, a)
		}
	}
	if len(sc.Actions) == 0 {
		return Scope{}, fmt.Errorf("scope %q: no action", clip(s))
	}
	return sc, nil
}

func isWord(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// validResourceName accepts repository names (with an optional host[:port]/ prefix) and
// the "catalog" resource: letters, digits and . _ - / : with no empty path component.
func validResourceName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == '/' || r == ':') {
			return false
		}
	}
	for _, c := range strings.Split(s, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// HasTrustScope reports whether any scope names a content-trust GUN of this registry.
func HasTrustScope(scopes []Scope) bool {
	for _, s := range scopes {
		if s.Repository != "" {
			return true
		}
	}
	return false
}
