package token

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/identity"
)

// roles is a test Authorizer: principal id → allowed "action scope" pairs. A principal
// named in broken gets an error that is not a refusal.
type roles struct {
	allow  map[string][]string
	broken map[string]bool
}

func (r roles) Authorize(ctx context.Context, req access.Request) error {
	if r.broken[req.Principal.ID] {
		return errors.New("database is on fire")
	}
	for _, a := range r.allow[req.Principal.ID] {
		if a == string(req.Action)+" "+string(req.Scope) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s at %s", access.ErrDenied, req.Action, req.Scope)
}

func TestGranterAudience(t *testing.T) {
	g := NewGranter(GranterOptions{Authorizer: roles{}, VaultResource: "https://vault.localhost"})
	for ref, want := range map[string]string{
		RegistryService:                         RegistryService,
		RegistryService + "/.default":           RegistryService,
		AudienceManagement:                      AudienceManagement,
		AudienceManagement + "/.default":        AudienceManagement,
		"https://vault.localhost":               "https://vault.localhost",
		"https://VAULT.localhost/":              "https://vault.localhost",
		"https://vault.localhost/.default":      "https://vault.localhost",
		"https://vault.localhost:5000":          "https://vault.localhost",
		"https://vault.localhost:5000/.default": "https://vault.localhost",
	} {
		got, err := g.Audience(ref)
		if err != nil || got != want {
			t.Errorf("Audience(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	for _, ref := range []string{"", "https://elsewhere", "https://vault.localhost:", "https://vault.localhost:123456", "https://vault.localhost:50a0", "coffer-registry2"} {
		if got, err := g.Audience(ref); !errors.Is(err, ErrUnknownAudience) {
			t.Errorf("Audience(%q) = %q, %v; want ErrUnknownAudience", ref, got, err)
		}
	}
	// Without a vault API there is no vault audience.
	novault := NewGranter(GranterOptions{Authorizer: roles{}})
	if _, err := novault.Audience("https://vault.localhost"); !errors.Is(err, ErrUnknownAudience) {
		t.Errorf("vault audience without a vault: %v", err)
	}
}

func TestGranterCheckAudience(t *testing.T) {
	g := NewGranter(GranterOptions{Authorizer: roles{}})
	ci := identity.Principal{ID: "ci", Kind: identity.KindRepositoryToken, Name: "ci"}
	user := identity.Principal{ID: "u", Kind: identity.KindUser, Name: "u"}
	if err := g.CheckAudience(ci, RegistryService); err != nil {
		t.Errorf("repository token for the registry: %v", err)
	}
	if err := g.CheckAudience(ci, AudienceManagement); !errors.Is(err, ErrRegistryOnly) {
		t.Errorf("repository token for management: %v, want ErrRegistryOnly", err)
	}
	if err := g.CheckAudience(user, AudienceManagement); err != nil {
		t.Errorf("user for management: %v", err)
	}
}

func TestGranterRegistryAccess(t *testing.T) {
	app := string(access.RepositoryScope("team/app"))
	authz := roles{
		allow: map[string][]string{
			"puller": {"registry/pull " + app},
			"owner":  {"registry/pull " + app, "registry/push " + app, "registry/delete " + app, "registry/list /registry"},
		},
		broken: map[string]bool{"broken": true},
	}
	anon := identity.Principal{Kind: identity.KindAnonymous, Name: "anonymous"}
	p := func(id string) identity.Principal {
		return identity.Principal{ID: id, Kind: identity.KindUser, Name: id}
	}
	scopes := func(t *testing.T, raw ...string) []Scope {
		sc, err := ParseScopes(raw)
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	cases := []struct {
		name      string
		anonPull  bool
		principal identity.Principal
		scopes    []string
		want      []Access
	}{
		{"pull only what roles allow", false, p("puller"), []string{"repository:team/app:pull,push"},
			[]Access{{Type: "repository", Name: "team/app", Actions: []string{"pull"}}}},
		{"* needs every action", false, p("puller"), []string{"repository:team/app:*"}, nil},
		{"* granted to an owner", false, p("owner"), []string{"repository:team/app:*"},
			[]Access{{Type: "repository", Name: "team/app", Actions: []string{"*"}}}},
		{"another repository", false, p("owner"), []string{"repository:team/other:pull"}, nil},
		{"unknown action and type left out", false, p("owner"), []string{"repository:team/app:fly", "thing:x:pull"}, nil},
		{"scopes for one repository merge", false, p("owner"), []string{"repository:team/app:pull", "repository:team/app:push,pull"},
			[]Access{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}}},
		{"catalog", false, p("owner"), []string{"registry:catalog:*"},
			[]Access{{Type: "registry", Name: "catalog", Actions: []string{"*"}}}},
		{"catalog refused", false, p("puller"), []string{"registry:catalog:*"}, nil},
		{"anonymous without anonymous pull", false, anon, []string{"repository:team/app:pull"}, nil},
		{"anonymous pull", true, anon, []string{"repository:team/app:pull,push", "registry:catalog:*"},
			[]Access{{Type: "repository", Name: "team/app", Actions: []string{"pull"}}}},
		{"anonymous pull for everyone", true, p("nobody"), []string{"repository:team/else:pull"},
			[]Access{{Type: "repository", Name: "team/else", Actions: []string{"pull"}}}},
		{"authorizer failure grants nothing", false, p("broken"), []string{"repository:team/app:pull"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			g := NewGranter(GranterOptions{Authorizer: authz, AnonymousPull: c.anonPull, Log: slog.New(slog.NewTextHandler(&logs, nil))})
			got := g.RegistryAccess(context.Background(), c.principal, scopes(t, c.scopes...))
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("RegistryAccess = %+v, want %+v", got, c.want)
			}
			// Only failures that are not refusals are worth a warning.
			if warned := strings.Contains(logs.String(), "authorization failed"); warned != (c.principal.ID == "broken") {
				t.Fatalf("warning logged = %v: %q", warned, logs.String())
			}
		})
	}
}
