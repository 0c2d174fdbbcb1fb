package token

import (
	"strings"
	"testing"
)

func TestParseScope(t *testing.T) {
	cases := []struct {
		in      string
		typ     string
		class   string
		name    string
		actions string
		bad     bool
	}{
		{in: "repository:library/alpine:pull", typ: "repository", name: "library/alpine", actions: "pull"},
		{in: "repository:app:pull,push", typ: "repository", name: "app", actions: "pull,push"},
		{in: "repository:app:pull,pull,push", typ: "repository", name: "app", actions: "pull,push"},
		{in: "repository:localhost:5000/team/app:*", typ: "repository", name: "localhost:5000/team/app", actions: "*"},
		{in: "repository(plugin):vieux/sshfs:pull", typ: "repository", class: "plugin", name: "vieux/sshfs", actions: "pull"},
		{in: "registry:catalog:*", typ: "registry", name: "catalog", actions: "*"},
		{in: "repository:app:", bad: true},
		{in: "repository:app", bad: true},
		{in: "repository::pull", bad: true},
		{in: "repository:a//b:pull", bad: true},
		{in: "repository:../etc:pull", bad: true},
		{in: "repository:app:pu ll", bad: true},
		{in: "repo(:app:pull", bad: true},
		{in: "(x):app:pull", bad: true},
		{in: ":app:pull", bad: true},
		{in: "repository:app name:pull", bad: true},
		{in: "repository:app:pull;rm", bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			sc, err := ParseScope(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("ParseScope(%q) = %+v, want an error", tc.in, sc)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sc.Type != tc.typ || sc.Class != tc.class || sc.Name != tc.name || strings.Join(sc.Actions, ",") != tc.actions {
				t.Fatalf("ParseScope(%q) = %+v", tc.in, sc)
			}
		})
	}
}

func TestParseScopesSplitsAndBounds(t *testing.T) {
	got, err := ParseScopes([]string{"repository:a:pull repository:b:push", "registry:catalog:*"})
	if err != nil || len(got) != 3 || got[1].Name != "b" {
		t.Fatalf("ParseScopes = %+v, %v", got, err)
	}
	many := strings.Repeat("repository:a:pull ", maxScopes+1)
	if _, err := ParseScopes([]string{many}); err == nil {
		t.Fatal("an unbounded number of scopes was accepted")
	}
}

func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"repository:library/alpine:pull,push", "registry:catalog:*", "repository(plugin):a/b:pull",
		"repository:localhost:5000/x:*", "a:b:c d:e:f", "::", "repository:a//b:pull"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		scopes, err := ParseScopes([]string{in})
		if err != nil {
			return
		}
		for _, sc := range scopes {
			if sc.Type == "" || sc.Name == "" || len(sc.Actions) == 0 {
				t.Fatalf("accepted an incomplete scope %+v from %q", sc, in)
			}
			// A parsed scope re-parses to itself.
			again, err := ParseScope(sc.String())
			if err != nil || again.String() != sc.String() {
				t.Fatalf("round trip of %q: %+v, %v", sc.String(), again, err)
			}
			for _, c := range sc.Name {
				if c == ' ' || c == ',' {
					t.Fatalf("name %q holds a separator", sc.Name)
				}
			}
		}
	})
}
