package wire

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseScope(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{"/", "/", ""},
		{"/registry", "/registry", ""},
		{"/registry/", "/registry", ""},
		{"registry", "/registry", ""},
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
		{"/vaults/a/keys/" + strings.Repeat("k", 128), "", "at most 127"},
		{"registry/", "/registry", ""},
		{"repository/Team/App", "", "invalid repository name"},
		{"/vaults/t/keys/bad_name", "", "invalid key name"},
		{"/other", "", "unknown scope"},
		{"other", "", "unknown scope"},
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

// TestScopeMessages pins the whole text of the errors people read (the CLI prints them
// before sending, the API answers them).
func TestScopeMessages(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "empty scope: use /, /registry, /registry/repositories/NAME, /vaults/VAULT or /vaults/VAULT/keys/KEY",
		"/other":             `unknown scope "/other": use /, /registry, /registry/repositories/NAME, /vaults/VAULT or /vaults/VAULT/keys/KEY (or registry, repository/NAME, vault/VAULT, vault/VAULT/key/KEY)`,
		"vaults/x":           `unknown scope "vaults/x": use registry, repository/NAME, vault/VAULT, vault/VAULT/key/KEY, or a path such as /vaults/VAULT`,
		"repository/App":     `scope "repository/App": invalid repository name "App": components are lower-case letters and digits separated by '.', '_', '__' or '-', joined by '/'`,
		"/vaults/-x":         `scope "/vaults/-x": invalid vault name "-x": 1-63 letters, digits and '-', not starting or ending with '-'`,
		"vault/a/secret/b":   `scope "vault/a/secret/b": only keys are below a vault: use key/KEY`,
		"/vaults/a/keys/":    `scope "/vaults/a/keys/": empty key name`,
		"/vaults/a/keys/b/c": `scope "/vaults/a/keys/b/c": invalid key name "b/c": only letters, digits and '-'`,
	} {
		if _, err := ParseScope(in); err == nil || err.Error() != want {
			t.Errorf("ParseScope(%q): %v; want %q", in, err, want)
		}
	}
}

func TestParseScopeMapEntry(t *testing.T) {
	const use = "use content/read, content/write, content/delete, metadata/read, metadata/write, content/sign"
	tests := []struct {
		in, want, wantErr string
	}{
		{"app:content/read,content/write", "app:content/read,content/write", ""},
		{"app:CONTENT/write, content/read,content/read", "app:content/read,content/write", ""},
		{" team/app :metadata/write,content/delete", "team/app:content/delete,metadata/write", ""},
		{"team/*:content/read", "team/*:content/read", ""},
		{"app", "", `invalid request: "app" is not REPOSITORY:ACTIONS (e.g. app:content/read,content/write)`},
		{":content/read", "", `invalid request: ":content/read" is not REPOSITORY:ACTIONS (e.g. app:content/read,content/write)`},
		{"app:", "", `invalid request: "app:" is not REPOSITORY:ACTIONS (e.g. app:content/read,content/write)`},
		{"app:,", "", `invalid request: repository "app" has no actions: ` + use},
		{"app:content/read,bogus,pull", "", `invalid request: unknown scope-map action "bogus": ` + use},
		{"a:b:c", "", `invalid request: unknown scope-map action "b:c": ` + use},
		{"Bad:bogus", "", `invalid request: invalid repository name "Bad": components are lower-case letters and digits separated by '.', '_', '__' or '-', joined by '/'`},
		{"a/*/*:content/read", "", `invalid request: invalid repository name "a/*": components are lower-case letters and digits separated by '.', '_', '__' or '-', joined by '/'`},
		{"*:content/read", "", `invalid request: invalid repository name "*": components are lower-case letters and digits separated by '.', '_', '__' or '-', joined by '/'`},
	}
	for _, tt := range tests {
		e, err := ParseScopeMapEntry(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseScopeMapEntry(%q) = %+v, %v; want ErrInvalid %q", tt.in, e, err, tt.wantErr)
			}
			continue
		}
		if got := e.Repository + ":" + strings.Join(e.Actions, ","); err != nil || got != tt.want {
			t.Errorf("ParseScopeMapEntry(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormalizeScopeMapBounds(t *testing.T) {
	read := []string{ScopeContentRead}
	many := make([]ScopeMapEntry, maxScopeMapEntries+1)
	for i := range many {
		many[i] = ScopeMapEntry{Repository: fmt.Sprintf("r%d", i), Actions: read}
	}
	if got, err := NormalizeScopeMap(many[:maxScopeMapEntries]); err != nil || len(got) != maxScopeMapEntries {
		t.Errorf("NormalizeScopeMap(%d entries) = %d, %v", maxScopeMapEntries, len(got), err)
	}
	for _, tt := range []struct {
		in   []ScopeMapEntry
		want string
	}{
		{nil, "invalid request: a repository token needs at least one repository, e.g. --repository app:content/read"},
		{many, "invalid request: 101 repositories in one scope map, at most 100"},
		{[]ScopeMapEntry{{Repository: "a", Actions: read}, {Repository: " a ", Actions: []string{ScopeContentWrite}}},
			`invalid request: repository "a" appears twice in the scope map: list all its actions once`},
	} {
		if _, err := NormalizeScopeMap(tt.in); err == nil || err.Error() != tt.want || !errors.Is(err, ErrInvalid) {
			t.Errorf("NormalizeScopeMap(%d entries): %v; want ErrInvalid %q", len(tt.in), err, tt.want)
		}
	}
}
