package access

import (
	"strings"
	"testing"
)

func TestParseScope(t *testing.T) {
	tests := []struct {
		in      string
		want    Scope
		wantErr string
	}{
		{"/", ScopeRoot, ""},
		{"/registry", ScopeRegistry, ""},
		{"/registry/", ScopeRegistry, ""},
		{"registry", ScopeRegistry, ""},
		{"/registry/repositories/app", "/registry/repositories/app", ""},
		{"/registry/repositories/team/app", "/registry/repositories/team/app", ""},
		{"/registry/repositories/a.b_c__d--e", "/registry/repositories/a.b_c__d--e", ""},
		{"repository/team/app", "/registry/repositories/team/app", ""},
		{"/vaults/team1", "/vaults/team1", ""},
		{"/vaults/Team1", "/vaults/team1", ""},
		{"vault/team1", "/vaults/team1", ""},
		{"/vaults/team1/keys/k1", "/vaults/team1/keys/k1", ""},
		{"/vaults/team1/keys/K-1", "/vaults/team1/keys/k-1", ""},
		{"vault/team1/key/k1", "/vaults/team1/keys/k1", ""},
		{"", "", "empty scope"},
		{"/registries", "", "unknown scope"},
		{"/registry/repositories/", "", "empty repository name"},
		{"/registry/repositories/App", "", "invalid repository name"},
		{"/registry/repositories/a//b", "", "invalid repository name"},
		{"/registry/repositories/-a", "", "invalid repository name"},
		{"/registry/repositories/a-", "", "invalid repository name"},
		{"/registry/repositories/a...b", "", "invalid repository name"},
		{"/registry/repositories/a___b", "", "invalid repository name"},
		{"repository/", "", "empty repository name"},
		{"/vaults/", "", "empty vault name"},
		{"/vaults/-x", "", "invalid vault name"},
		{"/vaults/a_b", "", "invalid vault name"},
		{"/vaults/a/keys/", "", "empty key name"},
		{"/vaults/a/keys/b/c", "", "invalid key name"},
		{"/vaults/a/secrets/b", "", "only keys are below a vault"},
		{"vault/a/key/b c", "", "invalid key name"},
		{"vaults/a", "", "unknown scope"},
		{"/registry/repositories/" + strings.Repeat("a", 256), "", "at most 255"},
		{"/vaults/" + strings.Repeat("a", 64), "", "invalid vault name"},
	}
	for _, tt := range tests {
		got, err := ParseScope(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseScope(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseScope(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

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

// FuzzParseScope checks that the scope parser never panics, that what it accepts is
// canonical (parsing it again gives the same scope) and that it only accepts the five
// scope shapes.
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

// FuzzParseScopeMapEntry checks that the scope-map parser (CLI --repository values and API
// bodies) never panics and that what it accepts is canonical and decidable.
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
