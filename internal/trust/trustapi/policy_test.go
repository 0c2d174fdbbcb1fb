package trustapi_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/trust"
	"github.com/cofferhq/coffer/internal/vault"
)

// trustKeys lists the keys of the content trust vault, as the registry's identity.
func trustKeys(t *testing.T, e *env) []string {
	t.Helper()
	ctx := vault.AsService(context.Background(), "test")
	sys := e.inst.Server.Identities().SystemIdentity()
	page, err := e.inst.Server.Vault().ListKeys(ctx, sys, trust.DefaultVaultName, 100, "")
	if err != nil {
		t.Fatalf("list trust vault keys: %v", err)
	}
	var names []string
	for _, k := range page.Items {
		names = append(names, k.Name)
	}
	return names
}

// TestDisableWipesAndEnableStartsEmpty publishes with the notary CLI (server-managed
// snapshot), disables content trust (the trust API then answers 404 saying so, and the
// vault no longer lists the server-held keys), and enables it again with no trust data.
func TestDisableWipesAndEnableStartsEmpty(t *testing.T) {
	e := start(t, nil)
	n := newNotary(t, e, "admin", e.inst.AdminPassword)
	gun := e.gun("team/app")
	f := writeFile(t, n.dir, "v1.bin", "one")
	n.must("init", gun)
	n.must("add", gun, "v1", f)
	n.must("publish", gun)
	n.must("key", "rotate", gun, "snapshot", "-r")
	if keys := trustKeys(t, e); len(keys) != 2 {
		t.Fatalf("server-held keys before disable: %v, want timestamp and snapshot", keys)
	}

	res := e.setTrust(t, "disabled")
	if res.Deleted == nil || res.Deleted.Collections != 1 || res.Deleted.Keys != 2 {
		t.Fatalf("disable answer: %+v", res)
	}
	if keys := trustKeys(t, e); len(keys) != 0 {
		t.Fatalf("server-held keys after disable: %v", keys)
	}
	// The trust API now says content trust is disabled (404, which clients report as no trust data).
	resp, err := e.inst.Client.Get(e.inst.URL + "/v2/" + gun + "/_trust/tuf/timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusNotFound {
		t.Fatalf("timestamp while disabled: %d %s", resp.StatusCode, body)
	}
	fresh := newNotary(t, e, "admin", e.inst.AdminPassword)
	if out, err := fresh.run("list", gun); err == nil || !strings.Contains(out, "does not have trust data") {
		t.Fatalf("list while disabled: %v\n%s", err, out)
	}

	e.setTrust(t, "enabled")
	if out, err := fresh.run("list", gun); err == nil || !strings.Contains(out, "does not have trust data") {
		t.Fatalf("list after enabling again: %v\n%s", err, out)
	}
	// A new collection can be published again.
	again := newNotary(t, e, "admin", e.inst.AdminPassword)
	again.must("init", gun)
	again.must("add", gun, "v1", f)
	again.must("publish", gun)
	if out := fresh.must("list", gun); !strings.Contains(out, "v1") {
		t.Fatalf("list after republish:\n%s", out)
	}
}
