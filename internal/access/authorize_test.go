package access_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/clocktest"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
)

type fixture struct {
	n     int // principals created so far
	db    *store.DB
	ids   *identity.Service
	authz *access.Service
	clock *clocktest.Clock
}

// newFixture opens the identity and access parts on a new store of newDB.
func newFixture(t testing.TB, newDB pgtest.Open) *fixture {
	t.Helper()
	ctx := context.Background()
	db := newDB(t)
	ids, err := identity.Open(ctx, db, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktest.New(time.Unix(1_800_000_000, 0))
	az, err := access.New(ctx, db, ids, access.Options{Now: clock.Now, CacheTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{db: db, ids: ids, authz: az, clock: clock}
}

func (f *fixture) principal(t testing.TB) identity.Principal {
	t.Helper()
	f.n++
	name := fmt.Sprintf("mi-%d", f.n)
	p, err := f.ids.CreateManagedIdentity(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fixture) assign(t testing.TB, role string, p identity.Principal, scope string) access.Assignment {
	t.Helper()
	a, _, err := f.authz.CreateAssignment(context.Background(), access.AssignmentSpec{Role: role, Assignee: p.ID, Scope: scope})
	if err != nil {
		t.Fatalf("assign %s to %s at %s: %v", role, p.Name, scope, err)
	}
	return a
}

func (f *fixture) allowed(t testing.TB, p identity.Principal, a access.Action, scope access.Scope, policies bool) bool {
	t.Helper()
	err := f.authz.Authorize(context.Background(), access.Request{Principal: p, Action: a, Scope: scope, VaultUsesPolicies: policies})
	if err != nil && !errors.Is(err, access.ErrDenied) {
		t.Fatalf("Authorize(%s, %s): unexpected error %v", a, scope, err)
	}
	return err == nil
}

// allKeyActions are the 19 key data-plane actions, spelled out so that the table below
// does not depend on the code under test.
var allKeyActions = []access.Action{
	access.KeyGet, access.KeyList, access.KeyCreate, access.KeyUpdate, access.KeyImport, access.KeyDelete,
	access.KeyRecover, access.KeyBackup, access.KeyRestore, access.KeyPurge, access.KeyWrap, access.KeyUnwrap,
	access.KeyEncrypt, access.KeyDecrypt, access.KeySign, access.KeyVerify, access.KeyRotate,
	access.KeyGetRotationPolicy, access.KeySetRotationPolicy,
}

var otherActions = []access.Action{
	access.RegistryPull, access.RegistryPush, access.RegistryDelete, access.RegistrySign, access.RegistryList,
	access.RegistryManage, access.RegistryMetadataWrite, access.VaultRead, access.VaultManage,
	access.IdentityRead, access.IdentityManage, access.AccessRead, access.AccessManage,
}

func everyAction() []access.Action {
	return append(append([]access.Action{}, otherActions...), allKeyActions...)
}

func without(all []access.Action, drop ...access.Action) []access.Action {
	var out []access.Action
outer:
	for _, a := range all {
		for _, d := range drop {
			if a == d {
				continue outer
			}
		}
		out = append(out, a)
	}
	return out
}

// expectedRoleActions is the role × action table, written out independently of the role
// definitions.
func expectedRoleActions() map[string][]access.Action {
	return map[string][]access.Action{
		"Owner":                    without(everyAction(), access.RegistrySign),
		"Contributor":              without(everyAction(), access.AccessManage, access.IdentityManage, access.RegistrySign),
		"Reader":                   {access.RegistryPull, access.RegistryList, access.VaultRead, access.KeyGet, access.KeyList, access.KeyGetRotationPolicy, access.IdentityRead, access.AccessRead},
		"AcrPull":                  {access.RegistryPull, access.RegistryList},
		"AcrPush":                  {access.RegistryPull, access.RegistryPush, access.RegistryList},
		"AcrDelete":                {access.RegistryDelete},
		"AcrImageSigner":           {access.RegistrySign},
		"Key Vault Administrator":  append([]access.Action{access.VaultRead}, allKeyActions...),
		"Key Vault Crypto Officer": allKeyActions,
		"Key Vault Crypto User":    {access.KeyGet, access.KeyList, access.KeyEncrypt, access.KeyDecrypt, access.KeyWrap, access.KeyUnwrap, access.KeySign, access.KeyVerify},
		"Key Vault Crypto Service Encryption User": {access.KeyGet, access.KeyWrap, access.KeyUnwrap},
		"Key Vault Reader":                         {access.KeyGet, access.KeyList, access.KeyGetRotationPolicy, access.VaultRead},
	}
}

// scopeCovers is the expected inheritance, written out for the scopes of the table.
var scopeCovers = map[access.Scope][]access.Scope{
	"/":                          {"/", "/registry", "/registry/repositories/app", "/registry/repositories/app/web", "/registry/repositories/other", "/vaults/team1", "/vaults/team1/keys/k1", "/vaults/team1/keys/k2", "/vaults/team2"},
	"/registry":                  {"/registry", "/registry/repositories/app", "/registry/repositories/app/web", "/registry/repositories/other"},
	"/registry/repositories/app": {"/registry/repositories/app", "/registry/repositories/app/web"},
	"/vaults/team1":              {"/vaults/team1", "/vaults/team1/keys/k1", "/vaults/team1/keys/k2"},
	"/vaults/team1/keys/k1":      {"/vaults/team1/keys/k1"},
}

var targetScopes = scopeCovers["/"]

// TestAuthorizeRoleScopeAction is the decision table: every built-in role, assigned at
// every kind of scope, asked every action at the same, inherited, sibling and parent
// scopes.
func testAuthorizeRoleScopeAction(t *testing.T, newDB pgtest.Open) {
	f := newFixture(t, newDB)
	roles := expectedRoleActions()
	if got := len(f.authz.RoleDefinitions()); got != len(roles) {
		t.Fatalf("%d built-in roles, the table has %d", got, len(roles))
	}
	for _, def := range f.authz.RoleDefinitions() {
		want, ok := roles[def.Name]
		if !ok {
			t.Fatalf("built-in role %q is not in the table", def.Name)
		}
		wantSet := map[access.Action]bool{}
		for _, a := range want {
			wantSet[a] = true
		}
		for grantScope, covered := range scopeCovers {
			p := f.principal(t)
			f.assign(t, def.Name, p, string(grantScope))
			coveredSet := map[access.Scope]bool{}
			for _, s := range covered {
				coveredSet[s] = true
			}
			for _, target := range targetScopes {
				for _, a := range everyAction() {
					want := coveredSet[target] && wantSet[a]
					if got := f.allowed(t, p, a, target, false); got != want {
						t.Errorf("role %q at %s: %s on %s allowed=%v, want %v", def.Name, grantScope, a, target, got, want)
					}
				}
			}
		}
	}
}

func testAuthorizeNothingAssigned(t *testing.T, newDB pgtest.Open) {
	f := newFixture(t, newDB)
	p := f.principal(t)
	// Someone else's grants must not leak to p.
	f.assign(t, "Owner", f.principal(t), "/")
	for _, target := range targetScopes {
		for _, a := range everyAction() {
			for _, pol := range []bool{false, true} {
				if f.allowed(t, p, a, target, pol) {
					t.Errorf("principal with nothing may %s on %s (policies=%v)", a, target, pol)
				}
			}
		}
	}
	if f.allowed(t, identity.Principal{}, access.RegistryPull, "/registry/repositories/app", false) {
		t.Error("a principal without object id was allowed")
	}
}

func testAuthorizeDeniedMessage(t *testing.T, newDB pgtest.Open) {
	f := newFixture(t, newDB)
	p := f.principal(t)
	ctx := context.Background()
	err := f.authz.Authorize(ctx, access.Request{Principal: p, Action: access.KeyUnwrap, Scope: access.KeyScope("team1", "k1")})
	if !errors.Is(err, access.ErrDenied) {
		t.Fatalf("want ErrDenied, got %v", err)
	}
	for _, want := range []string{p.ID, "vault/keys/unwrapKey", "/vaults/team1/keys/k1", "Key Vault Crypto Service Encryption User", "access policy with unwrapKey"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("denial %q does not mention %q", err, want)
		}
	}
	err = f.authz.Authorize(ctx, access.Request{Principal: p, Action: access.RegistryPush, Scope: access.RepositoryScope("app")})
	if err == nil || !strings.Contains(err.Error(), `"AcrPush"`) {
		t.Errorf("push denial should suggest AcrPush: %v", err)
	}
	err = f.authz.Authorize(ctx, access.Request{Principal: p, Action: access.KeyUnwrap, Scope: access.KeyScope("team1", "k1"), VaultUsesPolicies: true})
	for _, want := range []string{"access policies", "unwrapKey", "coffer vault policy set"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("policy denial %v does not mention %q", err, want)
		}
	}
}

func testAuthorizeAccessPolicies(t *testing.T, newDB pgtest.Open) {
	f := newFixture(t, newDB)
	ctx := context.Background()
	owner := f.principal(t)
	f.assign(t, "Owner", owner, "/")
	app := f.principal(t)
	k1, k2, other := access.KeyScope("team1", "k1"), access.KeyScope("team1", "k2"), access.KeyScope("team2", "k1")

	// Access-policy mode: roles do not decide key operations, not even Owner at /.
	if f.allowed(t, owner, access.KeyUnwrap, k1, true) {
		t.Error("Owner without an access policy may unwrap in an access-policy vault")
	}
	// ... but they still decide vault management and reads.
	if !f.allowed(t, owner, access.VaultManage, access.VaultScope("team1"), true) {
		t.Error("Owner may not manage an access-policy vault")
	}
	if !f.allowed(t, owner, access.KeyUnwrap, k1, false) {
		t.Error("Owner at / may not unwrap in an RBAC vault")
	}

	if _, err := f.authz.SetPolicy(ctx, "Team1", app.ID, []string{"get", "WRAPKEY", "unwrapkey"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		action access.Action
		scope  access.Scope
		want   bool
	}{
		{access.KeyGet, k1, true},
		{access.KeyWrap, k1, true},
		{access.KeyUnwrap, k2, true},
		{access.KeyUnwrap, access.VaultScope("team1"), true},
		{access.KeyUnwrap, "/vaults/TEAM1/keys/k1", true},
		{access.KeyEncrypt, k1, false},
		{access.KeyDelete, k1, false},
		{access.KeyUnwrap, other, false},
		{access.VaultRead, access.VaultScope("team1"), false}, // management stays RBAC
	}
	for _, c := range cases {
		if got := f.allowed(t, app, c.action, c.scope, true); got != c.want {
			t.Errorf("policy get,wrapKey,unwrapKey: %s on %s = %v, want %v", c.action, c.scope, got, c.want)
		}
	}
	// An access policy means nothing to an RBAC vault.
	if f.allowed(t, app, access.KeyUnwrap, k1, false) {
		t.Error("access policy applied to an RBAC vault")
	}
	// A role means nothing to an access-policy vault's key operations.
	f.assign(t, "Key Vault Crypto Officer", app, "/vaults/team1")
	if f.allowed(t, app, access.KeyDelete, k1, true) {
		t.Error("role applied to an access-policy vault's key operation")
	}

	// Replacing the policy replaces the permissions; deleting revokes at once.
	if _, err := f.authz.SetPolicy(ctx, "team1", app.ID, []string{"all"}); err != nil {
		t.Fatal(err)
	}
	if !f.allowed(t, app, access.KeyPurge, k1, true) {
		t.Error("'all' does not include purge")
	}
	if err := f.authz.DeletePolicy(ctx, "team1", app.ID); err != nil {
		t.Fatal(err)
	}
	if f.allowed(t, app, access.KeyGet, k1, true) {
		t.Error("deleted access policy still applies")
	}
	if err := f.authz.DeletePolicy(ctx, "team1", app.ID); !errors.Is(err, access.ErrNotFound) {
		t.Errorf("deleting a missing policy: %v, want ErrNotFound", err)
	}
	if _, err := f.authz.SetPolicy(ctx, "team1", app.ID, []string{"get"}); err != nil {
		t.Fatal(err)
	}
	if err := f.authz.DeleteVaultPolicies(ctx, "team1"); err != nil {
		t.Fatal(err)
	}
	if f.allowed(t, app, access.KeyGet, k1, true) {
		t.Error("policy survived DeleteVaultPolicies")
	}
}

func testAuthorizeRepositoryTokens(t *testing.T, newDB pgtest.Open) {
	f := newFixture(t, newDB)
	ctx := context.Background()
	tok, pw, err := f.authz.CreateRepositoryToken(ctx, "ci", []access.ScopeMapEntry{
		{Repository: "app", Actions: []string{"content/read", "content/write"}},
		{Repository: "team/*", Actions: []string{"Content/Delete", "metadata/read"}},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	if pw == "" || tok.ObjectID == "" {
		t.Fatalf("token %+v without password or object id", tok)
	}
	// The credential works and names a repository token.
	p, err := f.ids.Authenticate(ctx, "ci", pw)
	if err != nil {
		t.Fatalf("authenticate the token's credential: %v", err)
	}
	if p.Kind != identity.KindRepositoryToken || p.ID != tok.ObjectID {
		t.Fatalf("token authenticates as %+v", p)
	}
	repo := access.RepositoryScope
	cases := []struct {
		action access.Action
		scope  access.Scope
		want   bool
	}{
		{access.RegistryPull, repo("app"), true},
		{access.RegistryPush, repo("app"), true},
		{access.RegistryDelete, repo("app"), false},
		{access.RegistryPull, repo("apple"), false},
		{access.RegistryPull, repo("app/sub"), false}, // a scope map names repositories exactly
		{access.RegistryDelete, repo("team/x"), true},
		{access.RegistryPull, repo("team/x/y"), true},
		{access.RegistryPush, repo("team/x"), false},
		{access.RegistryDelete, repo("team"), false},
		{access.RegistryDelete, repo("teamx"), false},
		{access.RegistryList, access.ScopeRegistry, false},
		{access.RegistryPull, access.ScopeRegistry, false},
		{access.KeyGet, access.KeyScope("team1", "k1"), false},
		{access.AccessManage, access.ScopeRoot, false},
	}
	check := func(label string) {
		for _, c := range cases {
			for _, pol := range []bool{false, true} {
				if got := f.allowed(t, p, c.action, c.scope, pol); got != c.want {
					t.Errorf("%s: token %s on %s = %v, want %v", label, c.action, c.scope, got, c.want)
				}
			}
		}
	}
	check("scope map")

	// Roles never apply to a token, and it cannot be given any.
	if _, _, err := f.authz.CreateAssignment(ctx, access.AssignmentSpec{Role: "Owner", Assignee: "ci", Scope: "/"}); !errors.Is(err, access.ErrInvalid) {
		t.Errorf("assigning a role to a repository token: %v, want ErrInvalid", err)
	}
	// Even a grant that got into the store some other way is ignored.
	if _, err := f.db.ExecContext(ctx, `INSERT INTO access_role_assignments (id, role, principal_id, principal_kind, principal_name, scope, created_at, created_by)
		VALUES ('x', 'Owner', ?, 'repositoryToken', 'ci', '/', 0, '')`, p.ID); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2 * time.Minute) // past the cache TTL
	check("scope map with a stray Owner grant")
	if _, err := f.authz.SetPolicy(ctx, "team1", p.ID, []string{"get"}); !errors.Is(err, access.ErrInvalid) {
		t.Errorf("access policy for a repository token: %v, want ErrInvalid", err)
	}
	// A principal claiming to be a token without a scope map gets nothing.
	if f.allowed(t, identity.Principal{ID: "nope", Kind: identity.KindRepositoryToken}, access.RegistryPull, repo("app"), false) {
		t.Error("unknown repository token may pull")
	}

	list, err := f.authz.ListRepositoryTokens(ctx)
	if err != nil || len(list) != 1 || len(list[0].ScopeMap) != 2 || list[0].ScopeMap[1].Actions[0] != "content/delete" {
		t.Fatalf("ListRepositoryTokens = %+v, %v", list, err)
	}
	if _, _, err := f.authz.CreateRepositoryToken(ctx, "ci", []access.ScopeMapEntry{{Repository: "x", Actions: []string{"content/read"}}}, ""); !errors.Is(err, access.ErrConflict) {
		t.Errorf("second token named ci: %v, want ErrConflict", err)
	}

	if err := f.authz.DeleteRepositoryToken(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if f.allowed(t, p, access.RegistryPull, repo("app"), false) {
		t.Error("deleted token may still pull")
	}
	if _, err := f.ids.Authenticate(ctx, "ci", pw); err == nil {
		t.Error("deleted token's credential still authenticates")
	}
	if err := f.authz.DeleteRepositoryToken(ctx, "ci"); !errors.Is(err, access.ErrNotFound) {
		t.Errorf("deleting a missing token: %v", err)
	}
	// A credential without a scope map (an interrupted deletion) can still be removed.
	if _, opw, err := f.ids.CreateRepositoryToken(ctx, "orphan"); err != nil {
		t.Fatal(err)
	} else {
		if err := f.authz.DeleteRepositoryToken(ctx, "orphan"); err != nil {
			t.Fatalf("deleting an orphaned credential: %v", err)
		}
		if _, err := f.ids.Authenticate(ctx, "orphan", opw); err == nil {
			t.Error("orphaned credential still authenticates")
		}
	}
}

func TestScopeMapValidation(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
		want    access.ScopeMapEntry
	}{
		{"app:content/read,content/write", "", access.ScopeMapEntry{Repository: "app", Actions: []string{"content/read", "content/write"}}},
		{"team/app:CONTENT/WRITE,content/read,content/read", "", access.ScopeMapEntry{Repository: "team/app", Actions: []string{"content/read", "content/write"}}},
		{"team/*:metadata/read", "", access.ScopeMapEntry{Repository: "team/*", Actions: []string{"metadata/read"}}},
		{"app", "not REPOSITORY:ACTIONS", access.ScopeMapEntry{}},
		{"app:", "not REPOSITORY:ACTIONS", access.ScopeMapEntry{}},
		{"app:pull", `unknown scope-map action "pull"`, access.ScopeMapEntry{}},
		{"App:content/read", "invalid repository name", access.ScopeMapEntry{}},
		{"*:content/read", "invalid repository name", access.ScopeMapEntry{}},
	}
	for _, tt := range tests {
		got, err := access.ParseScopeMapEntry(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, access.ErrInvalid) {
				t.Errorf("ParseScopeMapEntry(%q) = %+v, %v; want ErrInvalid containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.Repository != tt.want.Repository || strings.Join(got.Actions, ",") != strings.Join(tt.want.Actions, ",") {
			t.Errorf("ParseScopeMapEntry(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	if _, err := access.NormalizeScopeMap([]access.ScopeMapEntry{{Repository: "a", Actions: []string{"content/read"}}, {Repository: "a", Actions: []string{"content/write"}}}); err == nil {
		t.Error("a repository twice in a scope map was accepted")
	}
	// The server enforces the bounds itself, whatever the client checked.
	many := make([]access.ScopeMapEntry, 101)
	for i := range many {
		many[i] = access.ScopeMapEntry{Repository: fmt.Sprintf("r%d", i), Actions: []string{"content/read"}}
	}
	for _, m := range [][]access.ScopeMapEntry{nil, many} {
		if _, err := access.NormalizeScopeMap(m); !errors.Is(err, access.ErrInvalid) {
			t.Errorf("NormalizeScopeMap(%d entries) = %v, want ErrInvalid", len(m), err)
		}
	}
}

func testPolicyValidation(t *testing.T, newDB pgtest.Open) {
	f := newFixture(t, newDB)
	ctx := context.Background()
	p := f.principal(t)
	tests := []struct {
		vault   string
		perms   []string
		wantErr string
		want    string
	}{
		{"team1", []string{"Get", "UNWRAPKEY", "wrapkey", "get"}, "", "get,wrapKey,unwrapKey"},
		{"team1", []string{"GetRotationPolicy", "setrotationpolicy", "rotate"}, "", "rotate,getrotationpolicy,setrotationpolicy"},
		{"team1", []string{"ALL"}, "", strings.Join(access.KeyPermissionNames(), ",")},
		{"team1", []string{"get", "unwrap"}, `unknown key permission "unwrap"`, ""},
		{"team1", []string{"get", "secrets"}, `"secrets"`, ""},
		{"team1", nil, "no key permissions", ""},
		{"team1", []string{" "}, "no key permissions", ""},
		{"bad_vault", []string{"get"}, "invalid vault name", ""},
	}
	for _, tt := range tests {
		pol, err := f.authz.SetPolicy(ctx, tt.vault, p.ID, tt.perms)
		if tt.wantErr != "" {
			if !errors.Is(err, access.ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("SetPolicy(%v) = %v; want ErrInvalid containing %q", tt.perms, err, tt.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(pol.KeyPermissions, ",") != tt.want {
			t.Errorf("SetPolicy(%v) = %v, %v; want %s", tt.perms, pol.KeyPermissions, err, tt.want)
		}
	}
	if err := func() error {
		_, err := f.authz.SetPolicy(ctx, "team1", p.ID, []string{"get", "bogus"})
		return err
	}(); err == nil || !strings.Contains(err.Error(), "unwrapKey") {
		t.Errorf("error for a bad permission should list the valid ones: %v", err)
	}
	list, err := f.authz.ListPolicies(ctx, "TEAM1")
	if err != nil || len(list) != 1 || list[0].ObjectID != p.ID || len(list[0].KeyPermissions) != 19 {
		t.Fatalf("ListPolicies = %+v, %v", list, err)
	}
	if list, err := f.authz.ListPolicies(ctx, "team2"); err != nil || len(list) != 0 {
		t.Fatalf("ListPolicies(team2) = %+v, %v", list, err)
	}
}

// TestScopeNameCase checks every scope kind with names that differ only in case. Vault and
// key names are case-insensitive (as in Azure Key Vault: the vault refuses a second key that
// differs from an existing one only in case), so a grant covers its name in any case.
// Repository names are lower case by the OCI grammar: an upper-case repository is no
// repository a grant or a scope map can name, so it is refused, never folded onto the
// lower-case one.
func testScopeNameCase(t *testing.T, newDB pgtest.Open) {
	f := newFixture(t, newDB)
	ctx := context.Background()
	p := f.principal(t)
	f.assign(t, access.RoleKeyVaultCryptoUser, p, "/vaults/team1/keys/lowkey")
	f.assign(t, access.RoleKeyVaultReader, p, "/vaults/team2")
	f.assign(t, access.RoleAcrPull, p, "/registry/repositories/app")
	cases := []struct {
		action access.Action
		scope  access.Scope
		want   bool
	}{
		{access.KeyWrap, access.KeyScope("team1", "lowkey"), true},
		{access.KeyWrap, access.KeyScope("team1", "LowKey"), true}, // the same key
		{access.KeyWrap, access.KeyScope("TEAM1", "LOWKEY"), true},
		{access.KeyWrap, access.KeyScope("team1", "lowkey2"), false},
		{access.KeyWrap, access.KeyScope("team1", "other"), false},
		{access.VaultRead, access.VaultScope("team2"), true},
		{access.VaultRead, access.VaultScope("Team2"), true},
		{access.VaultRead, access.VaultScope("team1"), false},
		{access.RegistryPull, access.RepositoryScope("app"), true},
		{access.RegistryPull, access.RepositoryScope("App"), false},
		{access.RegistryPull, access.RepositoryScope("APP"), false},
	}
	for _, c := range cases {
		if got := f.allowed(t, p, c.action, c.scope, false); got != c.want {
			t.Errorf("role grant: %s on %s: allowed=%v, want %v", c.action, c.scope, got, c.want)
		}
	}
	// A grant above the repositories does not reach a name the registry refuses either.
	r := f.principal(t)
	f.assign(t, access.RoleAcrPull, r, "/registry")
	if !f.allowed(t, r, access.RegistryPull, access.RepositoryScope("app"), false) || f.allowed(t, r, access.RegistryPull, access.RepositoryScope("App"), false) {
		t.Errorf("AcrPull at /registry: want app allowed and App refused")
	}
	// Access policies are per vault: the vault name is case-insensitive there too.
	q := f.principal(t)
	if _, err := f.authz.SetPolicy(ctx, "team3", q.ID, []string{"wrapKey"}); err != nil {
		t.Fatal(err)
	}
	if !f.allowed(t, q, access.KeyWrap, access.KeyScope("TEAM3", "Any"), true) {
		t.Errorf("access policy on team3 does not cover a key of TEAM3")
	}
	// A scope map names repositories in lower case; an upper-case one is not in it.
	tok, pw, err := f.authz.CreateRepositoryToken(ctx, "ci-case", []access.ScopeMapEntry{
		{Repository: "app", Actions: []string{"content/read"}},
		{Repository: "team/*", Actions: []string{"content/read"}},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	tp, err := f.ids.Authenticate(ctx, "ci-case", pw)
	if err != nil || tp.ID != tok.ObjectID {
		t.Fatalf("authenticate the token: %v", err)
	}
	for _, c := range []struct {
		repo string
		want bool
	}{{"app", true}, {"App", false}, {"team/x", true}, {"Team/x", false}, {"team/X", false}} {
		if got := f.allowed(t, tp, access.RegistryPull, access.RepositoryScope(c.repo), false); got != c.want {
			t.Errorf("scope map: pull %s: allowed=%v, want %v", c.repo, got, c.want)
		}
	}
	for _, bad := range []string{"App", "Team/*", "team/X"} {
		if _, err := access.NormalizeScopeMap([]access.ScopeMapEntry{{Repository: bad, Actions: []string{"content/read"}}}); err == nil {
			t.Errorf("scope map with repository %q accepted", bad)
		}
	}
	for _, bad := range []string{"/registry/repositories/App", "repository/APP"} {
		if _, err := access.ParseScope(bad); err == nil {
			t.Errorf("scope %q accepted", bad)
		}
	}
}
