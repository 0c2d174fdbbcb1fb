package access

import (
	"strings"
	"testing"
)

func TestScopeCovers(t *testing.T) {
	tests := []struct {
		grant, target Scope
		want          bool
	}{
		{"/", "/vaults/a/keys/b", true},
		{"/", "/registry", true},
		{"/registry", "/registry/repositories/app", true},
		{"/registry", "/vaults/a", false},
		{"/registry/repositories/app", "/registry/repositories/app", true},
		{"/registry/repositories/app", "/registry/repositories/app/sub", true},
		{"/registry/repositories/app", "/registry/repositories/apple", false},
		{"/registry/repositories/app", "/registry", false},
		{"/vaults/a", "/vaults/a/keys/k", true},
		{"/vaults/a", "/vaults/ab", false},
		{"/vaults/a/keys/k", "/vaults/a", false},
		{"/vaults/a/keys/k", "/vaults/a/keys/k2", false},
	}
	for _, tt := range tests {
		if got := tt.grant.Covers(tt.target); got != tt.want {
			t.Errorf("%q.Covers(%q) = %v, want %v", tt.grant, tt.target, got, tt.want)
		}
	}
}

// FuzzParseScope checks that the scope parser (the wire grammar, through ParseScope) never
// panics, that what it accepts is canonical (parsing it again gives the same scope) and
// that it only accepts the five scope shapes this part decides on.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"/", "/registry", "registry", "/registry/repositories/a/b", "repository/x.y",
		"/vaults/v", "vault/V/key/K", "/vaults/v/keys/k", "/vaults//keys/", "repository/A", "\x00", "/vaults/a/keys/b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseScope(in)
		if err != nil {
			return
		}
		again, err := ParseScope(string(s))
		if err != nil || again != s {
			t.Fatalf("ParseScope(%q) = %q, but parsing that again gives %q, %v", in, s, again, err)
		}
		if s.canonical() != s {
			t.Fatalf("ParseScope(%q) = %q is not in canonical (lower) case", in, s)
		}
		str := string(s)
		switch {
		case s == ScopeRoot, s == ScopeRegistry:
		case strings.HasPrefix(str, "/registry/repositories/"):
			if ValidateRepositoryName(s.repositoryOf()) != nil {
				t.Fatalf("accepted %q with a bad repository name", s)
			}
		case strings.HasPrefix(str, "/vaults/"):
			if s.vaultOf() == "" || strings.Count(str, "/") != 2 && strings.Count(str, "/") != 4 {
				t.Fatalf("accepted malformed vault scope %q", s)
			}
		default:
			t.Fatalf("accepted %q of unknown shape", s)
		}
	})
}

// FuzzParseScopeMapEntry checks that the scope-map parser (the wire grammar, through
// ParseScopeMapEntry: CLI --repository values and API bodies) never panics and that what
// it accepts is canonical and decidable (this part compiles it for Authorize).
func FuzzParseScopeMapEntry(f *testing.F) {
	for _, s := range []string{"app:content/read,content/write", "team/*:metadata/read", "a:", ":x", "a:b:c", "App:content/read", "x/*/*:content/read"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		e, err := ParseScopeMapEntry(in)
		if err != nil {
			return
		}
		if len(e.Actions) == 0 {
			t.Fatalf("accepted %q with no actions", in)
		}
		again, err := ParseScopeMapEntry(e.Repository + ":" + strings.Join(e.Actions, ","))
		if err != nil || again.Repository != e.Repository || strings.Join(again.Actions, ",") != strings.Join(e.Actions, ",") {
			t.Fatalf("ParseScopeMapEntry(%q) = %+v is not canonical: %+v, %v", in, e, again, err)
		}
		if _, err := newScopeMapEntry(e.Repository, e.Actions); err != nil {
			t.Fatalf("accepted %q but cannot compile it: %v", in, err)
		}
	})
}
