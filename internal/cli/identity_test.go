package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/cli"
	"github.com/cofferhq/coffer/internal/servertest"
)

// coffer runs one command line through the cobra root with stdin and returns stdout.
func coffer(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := cli.NewRoot()
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func mustCoffer(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := coffer(t, stdin, args...)
	if err != nil {
		t.Fatalf("coffer %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func jsonOf[T any](t *testing.T, raw string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		t.Fatalf("decode %q: %v", raw, err)
	}
	return v
}

type principalOut struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	ClientID string `json:"clientId"`
	Password string `json:"password"`
}

func TestLoginAndIdentityCommands(t *testing.T) {
	inst := servertest.Start(t, nil)
	cfgDir := t.TempDir()
	t.Setenv("COFFER_CONFIG_DIR", cfgDir)
	for _, v := range []string{"COFFER_SERVER", "COFFER_CA_FILE", "COFFER_USERNAME", "COFFER_PASSWORD", "COFFER_CLIENT_ID"} {
		t.Setenv(v, "")
	}

	// A wrong password is refused and nothing is saved.
	if _, err := coffer(t, "wrong-password\n", "login", inst.URL, "--ca-file", inst.CAFile, "-u", "admin", "--password-stdin"); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if _, err := os.Stat(filepath.Join(cfgDir, "credentials.json")); !os.IsNotExist(err) {
		t.Fatalf("credentials saved after a failed login: %v", err)
	}

	out := mustCoffer(t, inst.AdminPassword+"\n", "login", inst.URL, "--ca-file", inst.CAFile, "-u", "admin", "--password-stdin", "-o", "json")
	if who := jsonOf[map[string]any](t, out); who["username"] != "admin" || who["kind"] != "user" {
		t.Fatalf("login answer %s", out)
	}
	saved, err := os.ReadFile(filepath.Join(cfgDir, "credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(saved), inst.AdminPassword) || !strings.Contains(string(saved), "refreshToken") {
		t.Fatalf("saved credentials hold the password or no refresh token: %s", saved)
	}
	if info, _ := os.Stat(filepath.Join(cfgDir, "credentials.json")); info.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file mode %v", info.Mode().Perm())
	}

	// Users.
	u := jsonOf[principalOut](t, mustCoffer(t, "alice-password-1\n", "user", "create", "alice", "--password-stdin", "-o", "json"))
	if u.Name != "alice" || u.Kind != "user" || u.ID == "" || u.Password != "" {
		t.Fatalf("created user %+v", u)
	}
	gen := jsonOf[principalOut](t, mustCoffer(t, "", "user", "create", "bob", "-o", "json"))
	if len(gen.Password) < 16 {
		t.Fatalf("no generated password shown for bob: %+v", gen)
	}
	if _, err := coffer(t, "x\n", "user", "create", "alice", "-p", "another-password"); err == nil || !strings.Contains(err.Error(), "Conflict") {
		t.Fatalf("duplicate user: %v, want a Conflict error", err)
	}
	if table := mustCoffer(t, "", "user", "list"); !strings.Contains(table, "alice") || !strings.Contains(table, "bob") || !strings.Contains(table, "NAME") {
		t.Fatalf("user list table:\n%s", table)
	}
	mustCoffer(t, "alice-password-2\n", "user", "passwd", "alice", "--password-stdin")
	ctx := context.Background()
	if _, err := inst.Server.Identities().Authenticate(ctx, "alice", "alice-password-2"); err != nil {
		t.Fatalf("new password does not authenticate: %v", err)
	}
	mustCoffer(t, "", "user", "delete", "bob")
	if users := jsonOf[[]principalOut](t, mustCoffer(t, "", "user", "list", "-o", "json")); len(users) != 2 {
		t.Fatalf("users after deleting bob: %+v", users)
	}

	// Service principals.
	type spOut struct {
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
		TenantID     string `json:"tenantId"`
	}
	sp := jsonOf[spOut](t, mustCoffer(t, "", "sp", "create", "deployer", "-o", "json"))
	if sp.ClientID == "" || sp.ClientSecret == "" || sp.TenantID != inst.Server.Identities().TenantID() {
		t.Fatalf("sp create %+v", sp)
	}
	if _, err := inst.Server.Identities().Authenticate(ctx, sp.ClientID, sp.ClientSecret); err != nil {
		t.Fatalf("sp secret does not authenticate: %v", err)
	}
	reset := jsonOf[spOut](t, mustCoffer(t, "", "sp", "credential", "reset", "deployer", "-o", "json"))
	if reset.ClientSecret == sp.ClientSecret {
		t.Fatal("credential reset returned the old secret")
	}
	if _, err := inst.Server.Identities().Authenticate(ctx, sp.ClientID, sp.ClientSecret); err == nil {
		t.Fatal("the old secret still works after reset without --append")
	}
	// The service principal uses the CLI through COFFER_CLIENT_ID/SECRET.
	t.Setenv("COFFER_CLIENT_ID", sp.ClientID)
	t.Setenv("COFFER_CLIENT_SECRET", reset.ClientSecret)
	if _, err := coffer(t, "", "user", "list"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("a service principal without a role listed users: %v", err)
	}
	t.Setenv("COFFER_CLIENT_ID", "")
	if table := mustCoffer(t, "", "sp", "list"); !strings.Contains(table, "deployer") || !strings.Contains(table, sp.ClientID) {
		t.Fatalf("sp list:\n%s", table)
	}
	mustCoffer(t, "", "sp", "delete", sp.ClientID)

	// Managed identities.
	mi := jsonOf[principalOut](t, mustCoffer(t, "", "identity", "create", "kms-plugin", "-o", "json"))
	if mi.ClientID == "" || mi.Kind != "managedIdentity" {
		t.Fatalf("identity create %+v", mi)
	}
	if shown := jsonOf[principalOut](t, mustCoffer(t, "", "identity", "show", mi.ClientID, "-o", "json")); shown.ID != mi.ID {
		t.Fatalf("identity show by client id: %+v", shown)
	}
	if table := mustCoffer(t, "", "identity", "list"); !strings.Contains(table, "kms-plugin") || !strings.Contains(table, "registry") {
		t.Fatalf("identity list lacks the user-assigned or the system identity:\n%s", table)
	}
	if _, err := coffer(t, "", "identity", "delete", "registry"); err == nil {
		t.Fatal("the system-assigned identity was deleted")
	}
	mustCoffer(t, "", "identity", "delete", "kms-plugin")

	// Logout revokes the refresh token: reusing it fails.
	mustCoffer(t, "", "logout")
	if _, err := coffer(t, "", "user", "list"); err == nil || !strings.Contains(err.Error(), "coffer login") {
		t.Fatalf("after logout: %v", err)
	}
	var creds struct {
		RefreshToken string `json:"refreshToken"`
	}
	json.Unmarshal(saved, &creds)
	if _, err := inst.Server.Identities().RedeemRefreshToken(ctx, creds.RefreshToken, "coffer-management"); err == nil {
		t.Fatal("the refresh token still works after logout")
	}
}

func TestLoginHelpHasExample(t *testing.T) {
	for _, args := range [][]string{{"login"}, {"logout"}, {"user"}, {"user", "create"}, {"user", "passwd"}, {"user", "list"}, {"user", "delete"}, {"sp"}, {"sp", "create"}, {"sp", "credential"}, {"sp", "credential", "reset"}, {"sp", "list"}, {"sp", "delete"}, {"identity"}, {"identity", "create"}, {"identity", "list"}, {"identity", "show"}, {"identity", "delete"}} {
		out := mustCoffer(t, "", append(args, "--help")...)
		if !strings.Contains(out, "Examples:") {
			t.Fatalf("coffer %s --help has no example:\n%s", strings.Join(args, " "), out)
		}
	}
}

// TestUserChangesOwnPassword: changing one's own password needs the current one; a
// management token alone does not do it.
func TestUserChangesOwnPassword(t *testing.T) {
	inst := servertest.Start(t, nil)
	t.Setenv("COFFER_CONFIG_DIR", t.TempDir())
	for _, v := range []string{"COFFER_SERVER", "COFFER_CA_FILE", "COFFER_USERNAME", "COFFER_PASSWORD", "COFFER_CLIENT_ID"} {
		t.Setenv(v, "")
	}
	mustCoffer(t, inst.AdminPassword+"\n", "login", inst.URL, "--ca-file", inst.CAFile, "-u", "admin", "--password-stdin")
	if _, err := coffer(t, "not-the-password\nadmin-password-2\n", "user", "passwd", "admin", "--password-stdin"); err == nil || !strings.Contains(err.Error(), "current password is wrong") {
		t.Fatalf("own passwd with a wrong current password: %v", err)
	}
	mustCoffer(t, inst.AdminPassword+"\nadmin-password-2\n", "user", "passwd", "admin", "--password-stdin")
	if _, err := inst.Server.Identities().Authenticate(context.Background(), "admin", "admin-password-2"); err != nil {
		t.Fatalf("the new password does not authenticate: %v", err)
	}
}
