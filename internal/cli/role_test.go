package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/cli"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/servertest"
)

// runCLI runs one coffer command line and returns its stdout.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := cli.NewRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("coffer %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func decode[T any](t *testing.T, raw string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		t.Fatalf("decode %q: %v", raw, err)
	}
	return v
}

func TestRoleAndTokenCommands(t *testing.T) {
	inst := servertest.Start(t, nil)
	if _, err := inst.Server.Identities().CreateUser(context.Background(), "dev", "dev-password-1"); err != nil {
		t.Fatal(err)
	}
	asAdmin(t, inst)

	defs := decode[[]wire.RoleDefinition](t, mustCLI(t, "role", "definition", "list", "-o", "json"))
	if len(defs) != 12 {
		t.Fatalf("%d role definitions", len(defs))
	}
	if table := mustCLI(t, "role", "definition", "list", "--name", "key vault crypto service encryption user"); !strings.Contains(table, "vault/keys/unwrapKey") {
		t.Fatalf("definition table:\n%s", table)
	}

	a := decode[wire.RoleAssignment](t, mustCLI(t, "role", "assignment", "create", "--role", "AcrPull", "--assignee", "dev", "--scope", "repository/app", "-o", "json"))
	if a.Scope != "/registry/repositories/app" || a.Role != "AcrPull" || a.PrincipalName != "dev" {
		t.Fatalf("created %+v", a)
	}
	list := decode[[]wire.RoleAssignment](t, mustCLI(t, "role", "assignment", "list", "--assignee", "dev", "-o", "json"))
	if len(list) != 1 || list[0].ID != a.ID {
		t.Fatalf("dev's assignments: %+v", list)
	}
	// Inherited assignments show at a lower scope: admin's Owner at /.
	table := mustCLI(t, "role", "assignment", "list", "--scope", "vault/team1")
	if !strings.Contains(table, "Owner") || !strings.Contains(table, "admin") || strings.Contains(table, "AcrPull") {
		t.Fatalf("assignments at vault/team1:\n%s", table)
	}

	// dev may not assign roles.
	t.Setenv("COFFER_USERNAME", "dev")
	t.Setenv("COFFER_PASSWORD", "dev-password-1")
	if _, err := runCLI(t, "role", "assignment", "create", "--role", "Owner", "--assignee", "dev", "--scope", "/"); err == nil || !strings.Contains(err.Error(), "Forbidden") || !strings.Contains(err.Error(), "access/manage") {
		t.Fatalf("dev assigning Owner: %v", err)
	}
	t.Setenv("COFFER_USERNAME", "admin")
	t.Setenv("COFFER_PASSWORD", inst.AdminPassword)

	// A bad scope is refused before calling the server.
	if _, err := runCLI(t, "role", "assignment", "create", "--role", "AcrPull", "--assignee", "dev", "--scope", "vaults/x"); err == nil || !strings.Contains(err.Error(), "unknown scope") {
		t.Fatalf("bad scope: %v", err)
	}

	mustCLI(t, "role", "assignment", "delete", "--role", "acrpull", "--assignee", "dev", "--scope", "/registry/repositories/app")
	if list := decode[[]wire.RoleAssignment](t, mustCLI(t, "role", "assignment", "list", "--assignee", "dev", "-o", "json")); len(list) != 0 {
		t.Fatalf("after delete: %+v", list)
	}
	if _, err := runCLI(t, "role", "assignment", "delete", "--id", a.ID); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("deleting twice: %v", err)
	}
	if _, err := runCLI(t, "role", "assignment", "delete", "--role", "AcrPull"); err == nil {
		t.Fatal("delete with only --role was accepted")
	}

	created := decode[struct {
		wire.RepositoryToken
		Password string `json:"password"`
	}](t, mustCLI(t, "token", "create", "--name", "ci", "--repository", "app:content/read,content/write", "--repository", "team/*:content/read", "-o", "json"))
	if created.Password == "" || len(created.ScopeMap) != 2 {
		t.Fatalf("token create: %+v", created)
	}
	if table := mustCLI(t, "token", "list"); !strings.Contains(table, "app:content/read,content/write") || !strings.Contains(table, "team/*:content/read") || strings.Contains(table, created.Password) {
		t.Fatalf("token list:\n%s", table)
	}
	if _, err := runCLI(t, "token", "create", "--name", "bad", "--repository", "app:pull"); err == nil || !strings.Contains(err.Error(), `"pull"`) {
		t.Fatalf("bad scope-map action: %v", err)
	}
	mustCLI(t, "token", "delete", "ci")
	if list := decode[[]wire.RepositoryToken](t, mustCLI(t, "token", "list", "-o", "json")); len(list) != 0 {
		t.Fatalf("tokens after delete: %+v", list)
	}
}
