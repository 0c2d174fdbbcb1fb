package console

import (
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// TestVaultPagesRender renders the vault pages with typical data, each control shown and
// each absent with its reason: a template that fails at run time fails here.
func TestVaultPagesRender(t *testing.T) {
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	c := &Console{pages: pages, cfg: Config{Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}}
	now := time.Now()
	v := wire.Vault{Name: "v1", URL: "https://v1.vault.example", SoftDeleteRetentionDays: 7, EnablePurgeProtection: true,
		NetworkRules: wire.NetworkRules{DefaultAction: "Deny", IPRules: []string{"10.0.0.0/8"}, Bypass: "CofferServices"}}
	key := wire.Key{Name: "k", Version: "1", Tags: map[string]string{"a": "<b>"}, Attributes: wire.KeyAttributes{Expires: &now}}
	del := []deletedRow{{DeletedKey: wire.DeletedKey{Key: key, ScheduledPurgeDate: now}, Why: "because"}, {DeletedKey: wire.DeletedKey{Key: key}, CanPurge: true}}
	for _, can := range []bool{true, false} {
		typical := map[string]map[string]any{
			"vaults":        {"Vaults": []wire.Vault{v}, "CanCreate": can, "Form": map[string]string{"model": "rbac"}, "Need": "n"},
			"vault":         {"Vault": v, "Tabs": vaultTabs("v1", "vault"), "Keys": []wire.Key{key}, "CanCreateKey": can, "CanManage": can, "SkipToken": "x"},
			"vault_deleted": {"Vault": v, "Tabs": vaultTabs("v1", "vault/deleted"), "Deleted": del, "CanRecover": can},
			"vault_access": {"Vault": v, "Tabs": vaultTabs("v1", "vault/access"), "CanManage": can, "CanAssign": can, "Permissions": []string{"get"},
				"Policies":    []permissionRow{{AccessPolicy: wire.AccessPolicy{ObjectID: "o", KeyPermissions: []string{"get"}}, Who: "w"}},
				"Assignments": []vaultAssignmentRow{{RoleAssignment: wire.RoleAssignment{ID: "1", Scope: "/", Role: "Owner"}, Inherited: true}, {RoleAssignment: wire.RoleAssignment{ID: "2", Scope: "/vaults/v1"}}},
				"Roles":       []wire.RoleDefinition{{Name: "Owner"}}},
			"vault_network": {"Vault": v, "Tabs": vaultTabs("v1", "vault/network"), "Rules": &v.NetworkRules, "CanManage": can, "Addr": "127.0.0.1"},
			"vault_confirm": {"C": confirmData{Action: "/console/vault/delete", Word: "v1", Fields: map[string]string{"name": "v1"}, Facts: []string{"f"}, Allowed: can, Reason: "r"}},
			"key": {"Key": key, "VaultName": "v1", "Vault": v, "Versions": []wire.Key{key}, "CanRotate": can, "CanUpdate": can, "CanSetPolicy": can, "CanDelete": can,
				"Policy": wire.RotationPolicy{LifetimeActions: []wire.LifetimeAction{{Action: wire.LifetimeActionType{Type: "Rotate"}, Trigger: wire.LifetimeTrigger{TimeAfterCreate: "P1D"}}}}, "PolicyForm": policyForm{}},
		}
		for name, data := range typical {
			w := httptest.NewRecorder()
			c.render(w, httptest.NewRequest("GET", "/console/", nil), 200, name, &Session{CSRF: "tok"}, data)
			if w.Code != 200 || !strings.Contains(w.Body.String(), "</html>") {
				t.Errorf("page %s (allowed %v): %d %s", name, can, w.Code, w.Body.String())
			}
			if strings.Contains(w.Body.String(), "<b>") {
				t.Errorf("page %s renders a tag's markup", name)
			}
		}
	}
}

// TestVaultFormParsing: the form fields the vault pages read before calling the API.
func TestVaultFormParsing(t *testing.T) {
	if got := ipRules(" 10.0.0.0/8\r\n192.168.1.1, 172.16.0.0/12 \n\n"); strings.Join(got, "|") != "10.0.0.0/8|192.168.1.1|172.16.0.0/12" {
		t.Errorf("ipRules = %q", got)
	}
	if got := ipRules(""); got == nil || len(got) != 0 {
		t.Errorf("ipRules of nothing = %#v, want an empty list (no rules)", got)
	}
	if tags, ok := keyTags("a=1, b = x=y"); !ok || tags["a"] != "1" || tags["b"] != "x=y" {
		t.Errorf("keyTags = %v %v", tags, ok)
	}
	if _, ok := keyTags("novalue"); ok {
		t.Error("keyTags accepted a tag without =")
	}
	for in, want := range map[string]string{"2030-01-02T03:04": "2030-01-02T03:04:00Z", "2030-01-02T03:04:05": "2030-01-02T03:04:05Z",
		"2030-01-02T03:04:05+02:00": "2030-01-02T01:04:05Z", "2030-01-02": "2030-01-02T00:00:00Z"} {
		got, ok := formTime(in, false)
		if !ok || got == nil || got.UTC().Format(time.RFC3339) != want {
			t.Errorf("formTime(%q) = %v %v, want %s", in, got, ok, want)
		}
	}
	if got, ok := formTime("", false); !ok || got != nil {
		t.Error("an empty date should leave the value as it is")
	}
	if got, ok := formTime("x", true); !ok || got == nil || !got.IsZero() {
		t.Error("clear should send the zero time (remove)")
	}
	if _, ok := formTime("tomorrow", false); ok {
		t.Error("formTime accepted words")
	}
}

func TestDoneMessage(t *testing.T) {
	q := map[string][]string{"purged": {"k2"}}
	if got := doneMessage(q, "deleted", "Deleted %s.", "purged", "Purged %s."); got != "Purged k2." {
		t.Errorf("doneMessage = %q", got)
	}
	if got := doneMessage(q, "deleted", "Deleted %s."); got != "" {
		t.Errorf("doneMessage without its parameter = %q", got)
	}
}
