package console_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/chromedp/chromedp"

	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// sdkStatus is the HTTP status the Azure SDK's GetKey got for key name in vault, as p (0:
// it succeeded).
func sdkStatus(t *testing.T, e *env, vault, name string, p vaulttest.Principal) int {
	t.Helper()
	c, err := azkeys.NewClient(e.HostURL(vault), e.Credential(t, p), &azkeys.ClientOptions{
		ClientOptions: policy.ClientOptions{Transport: e.HTTP, Retry: policy.RetryOptions{MaxRetries: -1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetKey(context.Background(), name, "", nil)
	if err == nil {
		return 0
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("GetKey %s/%s: %v", vault, name, err)
	}
	return re.StatusCode
}

// attr is an attribute of the first node matching sel ("" when there is none).
func (b *browser) attr(sel, name string) string {
	b.t.Helper()
	return get(b, "attribute "+name+" of "+sel, chromedp.Evaluate[string](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? (e.getAttribute(%q) || "") : ""; })()`, sel, name)))
}

// createVaultInBrowser fills the console's Create a vault form.
func (b *browser) createVault(name string, rbac, purgeProtection bool) {
	b.t.Helper()
	acts := []chromedp.Action[chromedp.Void]{chromedp.Navigate(b.base + "/console/vaults"), chromedp.WaitVisible(chromedp.CSS("#create-vault")),
		chromedp.SendKeys(chromedp.CSS("#vault-name"), name), chromedp.SetValue(chromedp.CSS("#retention"), "7")}
	if rbac {
		acts = append(acts, chromedp.Click(chromedp.CSS("#model-rbac")))
	}
	if purgeProtection {
		acts = append(acts, chromedp.Click(chromedp.CSS("#purge-protection")))
	}
	b.run("create vault "+name, append(acts, chromedp.Click(chromedp.CSS("#create-vault-button")))...)
	b.waitText("#done", "Created the vault")
}

// createKeyInBrowser creates a key on the vault's page with tags.
func (b *browser) createKey(vault, name, tags string) {
	b.t.Helper()
	acts := []chromedp.Action[chromedp.Void]{chromedp.Navigate(b.base + "/console/vault?name=" + vault), chromedp.WaitVisible(chromedp.CSS("#create-key")),
		chromedp.SendKeys(chromedp.CSS("#key-name"), name)}
	if tags != "" {
		acts = append(acts, chromedp.SetValue(chromedp.CSS("#key-tags"), tags))
	}
	b.run("create key "+name, append(acts, chromedp.Click(chromedp.CSS("#create")))...)
	b.waitText("#done", "Created version")
}

// setPolicyInBrowser adds an access policy on the vault's Access page.
func (b *browser) setPolicy(vault, object string, perms ...string) {
	b.t.Helper()
	acts := []chromedp.Action[chromedp.Void]{chromedp.Navigate(b.base + "/console/vault/access?name=" + vault), chromedp.WaitVisible(chromedp.CSS("#policy-form")),
		chromedp.SendKeys(chromedp.CSS("#policy-object"), object)}
	for _, p := range perms {
		acts = append(acts, chromedp.Click(chromedp.CSS("#perm-"+p)))
	}
	b.run("access policy for "+object, append(acts, chromedp.Click(chromedp.CSS("#save-policy")))...)
	b.waitText("#done", "Access policy of")
}

// TestConsoleVaultsInBrowser drives Chromium through the vault pages as the administrator:
// create a vault, give access policies (to the administrator, then to a service principal
// that the Azure SDK then sees gain access), create a key with a stored-XSS tag, set its
// expiry, activation and rotation policy, delete and recover it, delete and purge another,
// see purge refused with the date on a purge-protected vault, set a Deny network rule and
// see it shown and applied, refuse and then do a vault delete, and assign and remove a role
// on an RBAC vault.
func TestConsoleVaultsInBrowser(t *testing.T) {
	e := start(t)
	app := e.ServicePrincipal(t, "app1")
	b := newBrowser(t, e, 1280, 900)
	b.signIn("admin", e.Inst.AdminPassword)

	// Create a vault: it is listed with its properties; nobody may use its keys yet.
	b.createVault("ops", false, false)
	if got := b.text("#vault-model"); got != "access policies" {
		t.Fatalf("new vault's access model %q", got)
	}
	if got := b.text("#no-create-key"); !strings.Contains(got, "access policy") {
		t.Fatalf("without a policy the key form should be absent with the reason, got %q", got)
	}
	b.run("vault list", chromedp.Navigate(b.base+"/console/vaults"), chromedp.WaitVisible(chromedp.CSS("#vaults")))
	if got := b.text("#vaults tbody"); !strings.Contains(got, "ops") || !strings.Contains(got, "7 days") {
		t.Fatalf("vaults table %q", got)
	}
	b.doc("vaults")

	// An access policy for the administrator, then a key with an XSS attempt in a tag.
	b.setPolicy("ops", "admin", "all")
	if got := b.text("#policies tbody"); !strings.Contains(got, "admin") || !strings.Contains(got, "unwrapKey") {
		t.Fatalf("policies after adding admin's: %q", got)
	}
	b.createKey("ops", "k1", "note="+xss)
	title := get(b, "title", chromedp.Title())
	injected := get(b, "xss", chromedp.Evaluate[int](`document.querySelectorAll("#key-tags-shown script, #key-tags-shown img").length`))
	if got := b.text("#key-tags-shown"); !strings.Contains(got, xss) || title == "pwned" || injected != 0 {
		t.Fatalf("key tag rendered as %q (title %q, %d injected elements)", got, title, injected)
	}

	// Expiry, activation and the rotation policy.
	// (A date input normalizes its value: no ":00" seconds, or SetValue reads back another.)
	b.run("dates", chromedp.SetValue(chromedp.CSS("#expires"), "2030-01-02T03:04:05"), chromedp.SetValue(chromedp.CSS("#nbf"), "2026-01-01T00:00"),
		chromedp.Click(chromedp.CSS("#save-dates")))
	b.waitText("#done", "Saved the dates")
	if got, nbf := b.attr("#key-expires time", "datetime"), b.attr("#key-nbf time", "datetime"); got != "2030-01-02T03:04:05Z" || nbf != "2026-01-01T00:00:00Z" {
		t.Fatalf("key page shows expiry %q and activation %q", got, nbf)
	}
	b.run("rotation policy", chromedp.SetValue(chromedp.CSS("#rotate-after-create"), "P90D"), chromedp.SetValue(chromedp.CSS("#notify-before-expiry"), "P30D"),
		chromedp.SetValue(chromedp.CSS("#expiry-time"), "P1Y"), chromedp.Click(chromedp.CSS("#save-policy")))
	b.waitText("#done", "Saved the rotation policy")
	if got := b.text("#rotation-policy"); !strings.Contains(got, "Rotate P90D after creation") || !strings.Contains(got, "Notify P30D before expiry") || !strings.Contains(got, "expire P1Y after creation") {
		t.Fatalf("rotation policy shown as %q", got)
	}
	if got := b.attr("#rotate-after-create", "value"); got != "P90D" {
		t.Fatalf("the policy form does not show the policy: %q", got)
	}
	var pol struct {
		LifetimeActions []struct {
			Trigger struct{ TimeAfterCreate string }
			Action  struct{ Type string }
		}
		Attributes struct{ ExpiryTime string }
	}
	e.MustDo(t, "GET", "/coffer/v1/vaults/ops/keys/k1/rotationpolicy", nil, &pol)
	if pol.Attributes.ExpiryTime != "P1Y" || len(pol.LifetimeActions) != 2 || pol.LifetimeActions[0].Trigger.TimeAfterCreate != "P90D" {
		t.Fatalf("the API has the rotation policy %+v", pol)
	}
	b.doc("key-settings")

	// A second identity gains access through an access policy added here: the Azure SDK,
	// refused before, reads the key after.
	if st := sdkStatus(t, e, "ops", "k1", app); st != http.StatusForbidden {
		t.Fatalf("before its policy, app1's GetKey = %d, want 403", st)
	}
	b.setPolicy("ops", app.ClientID, "get", "list")
	if got := b.text("#policies tbody"); !strings.Contains(got, "app1") || !strings.Contains(got, app.ObjectID) {
		t.Fatalf("policies after adding app1's (by client id): %q", got)
	}
	if st := sdkStatus(t, e, "ops", "k1", app); st != 0 {
		t.Fatalf("after its policy, app1's GetKey = %d, want success", st)
	}
	b.doc("vault-access")

	// Delete k1 behind a typed confirmation, then recover it.
	b.run("delete k1", chromedp.Navigate(b.base+"/console/key?vault=ops&name=k1"), chromedp.Click(chromedp.CSS("#delete-key")), chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if got := b.text("#confirm-text"); !strings.Contains(got, "soft delete") || !strings.Contains(got, "7 days") || !strings.Contains(got, "Purge protection is off") {
		t.Fatalf("key delete confirmation %q", got)
	}
	b.doc("key-delete")
	b.run("mistyped", chromedp.SendKeys(chromedp.CSS("#confirm"), "k2"), chromedp.Click(chromedp.CSS("#confirm-button")), chromedp.WaitVisible(chromedp.CSS("#problem")))
	if st := sdkStatus(t, e, "ops", "k1", app); st != 0 {
		t.Fatalf("a mistyped confirmation deleted the key (GetKey %d)", st)
	}
	b.run("confirm", chromedp.SendKeys(chromedp.CSS("#confirm"), "k1"), chromedp.Click(chromedp.CSS("#confirm-button")))
	b.waitText("#done", "Deleted key k1")
	if got := b.text("#deleted tbody"); !strings.Contains(got, "k1") {
		t.Fatalf("deleted keys after deleting k1: %q", got)
	}
	if st := sdkStatus(t, e, "ops", "k1", app); st != http.StatusNotFound {
		t.Fatalf("after the delete, GetKey = %d, want 404", st)
	}
	b.run("recover", chromedp.Click(chromedp.CSS(`#deleted tr[data-key="k1"] button.recover`)))
	b.waitText("#done", "Recovered")
	if got := b.text("#kid"); !strings.Contains(got, "/keys/k1/") {
		t.Fatalf("after recovering, the key page shows %q", got)
	}
	if st := sdkStatus(t, e, "ops", "k1", app); st != 0 {
		t.Fatalf("after recovering, GetKey = %d", st)
	}

	// Delete k2 and purge it.
	b.createKey("ops", "k2", "")
	b.run("delete k2", chromedp.Click(chromedp.CSS("#delete-key")), chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.SendKeys(chromedp.CSS("#confirm"), "k2"), chromedp.Click(chromedp.CSS("#confirm-button")))
	b.waitText("#done", "Deleted key k2")
	b.run("purge k2", chromedp.Click(chromedp.CSS(`#deleted tr[data-key="k2"] a.purge`)), chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if got := b.text("#confirm-text"); !strings.Contains(got, "cannot be undone") {
		t.Fatalf("purge confirmation %q", got)
	}
	b.run("confirm purge", chromedp.SendKeys(chromedp.CSS("#confirm"), "k2"), chromedp.Click(chromedp.CSS("#confirm-button")))
	b.waitText("#done", "Purged key k2")
	if err := e.Do("GET", "/coffer/v1/vaults/ops/deletedkeys/k2", nil, nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("after the purge the API still has deleted key k2: %v", err)
	}

	// On a purge-protected vault a deleted key shows its purge date and no purge.
	b.createVault("locked", false, true)
	b.setPolicy("locked", "admin", "all")
	b.createKey("locked", "kept", "")
	b.run("delete kept", chromedp.Click(chromedp.CSS("#delete-key")), chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if got := b.text("#confirm-text"); !strings.Contains(got, "Purge protection is on") {
		t.Fatalf("confirmation on a purge-protected vault: %q", got)
	}
	b.run("confirm", chromedp.SendKeys(chromedp.CSS("#confirm"), "kept"), chromedp.Click(chromedp.CSS("#confirm-button")))
	b.waitText("#done", "Deleted key kept")
	if got := b.text(`#deleted tr[data-key="kept"] .no-purge`); !strings.Contains(got, "Purge protection is on") || !strings.Contains(got, "can be purged after 20") {
		t.Fatalf("purge-protected key shows %q", got)
	}
	if n := get(b, "purge links", chromedp.Evaluate[int](`document.querySelectorAll("#deleted a.purge").length`)); n != 0 {
		t.Fatalf("%d purge links on a purge-protected vault", n)
	}
	if got := b.text("#purge-protection-state"); !strings.HasPrefix(got, "on") {
		t.Fatalf("purge protection shown as %q", got)
	}
	b.doc("vault-deleted")

	// Deleting a vault that holds keys is refused by the API and said so; an empty one goes.
	b.run("delete ops", chromedp.Navigate(b.base+"/console/vault?name=ops"), chromedp.Click(chromedp.CSS("#delete-vault")), chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.SendKeys(chromedp.CSS("#confirm"), "ops"), chromedp.Click(chromedp.CSS("#confirm-button")))
	if got := b.waitText("#problem", "still holds"); !strings.Contains(got, "purge") {
		t.Fatalf("refused vault delete says %q", got)
	}
	b.createVault("scratch", false, false)
	b.run("delete scratch", chromedp.Click(chromedp.CSS("#delete-vault")), chromedp.WaitVisible(chromedp.CSS("#confirm")))
	b.doc("vault-delete")
	b.run("confirm", chromedp.SendKeys(chromedp.CSS("#confirm"), "scratch"), chromedp.Click(chromedp.CSS("#confirm-button")))
	b.waitText("#done", "Deleted vault scratch")
	if got := b.text("#vaults tbody"); strings.Contains(got, "scratch") || !strings.Contains(got, "ops") {
		t.Fatalf("vaults after deleting scratch: %q", got)
	}

	// Network rules: Deny with a range that leaves out this browser. The page shows it, and
	// key operations from here (the console's own, the SDK's) are refused.
	b.run("network", chromedp.Navigate(b.base+"/console/vault/network?name=ops"), chromedp.WaitVisible(chromedp.CSS("#network-form")),
		chromedp.SetValue(chromedp.CSS("#default-action"), "Deny"), chromedp.SetValue(chromedp.CSS("#ip-rules"), "10.0.0.0/8\n192.168.1.0/24"),
		chromedp.Click(chromedp.CSS("#save-network")))
	b.waitText("#done", "Network rules saved")
	if got := b.text("#default-action-state"); got != "Deny" {
		t.Fatalf("default action shown as %q", got)
	}
	if got := b.text("#ip-rules-state"); !strings.Contains(got, "10.0.0.0/8") || !strings.Contains(got, "192.168.1.0/24") {
		t.Fatalf("IP rules shown as %q", got)
	}
	if got := b.text("#bypass-state"); got != "CofferServices" {
		t.Fatalf("bypass shown as %q", got)
	}
	b.doc("vault-network")
	b.run("vault under Deny", chromedp.Navigate(b.base+"/console/vault?name=ops"), chromedp.WaitVisible(chromedp.CSS("#vault-network")))
	if got := b.text("#vault-network"); !strings.Contains(got, "default Deny") {
		t.Fatalf("vault facts show network %q", got)
	}
	if got := b.text("#keys-problem"); got == "" {
		t.Fatal("the console still lists keys from a denied address")
	}
	if st := sdkStatus(t, e, "ops", "k1", app); st != http.StatusForbidden {
		t.Fatalf("under Deny, the SDK's GetKey from 127.0.0.1 = %d, want 403", st)
	}

	// An RBAC vault: assign a role at the vault, see it, remove it.
	b.createVault("rbac1", true, false)
	b.run("assign", chromedp.Navigate(b.base+"/console/vault/access?name=rbac1"), chromedp.WaitVisible(chromedp.CSS("#role-form")),
		chromedp.SetValue(chromedp.CSS("#role"), "Key Vault Crypto User"), chromedp.SendKeys(chromedp.CSS("#assignee"), "app1"), chromedp.Click(chromedp.CSS("#assign-role")))
	b.waitText("#done", "Assigned Key Vault Crypto User to app1 at /vaults/rbac1")
	if got := b.text("#vault-assignments tbody"); !strings.Contains(got, "Key Vault Crypto User") || !strings.Contains(got, "app1") || !strings.Contains(got, "inherited from /") {
		t.Fatalf("assignments at rbac1: %q", got)
	}
	if n := get(b, "policies", chromedp.Evaluate[int](`document.querySelectorAll("#policy-form").length`)); n != 0 {
		t.Fatal("an RBAC vault offers access policies")
	}
	b.run("unassign", chromedp.Click(chromedp.CSS("#vault-assignments button.remove-role")))
	b.waitText("#done", "Removed the role Key Vault Crypto User")
	if got := b.text("#vault-assignments tbody"); strings.Contains(got, "app1") {
		t.Fatalf("after removing, assignments: %q", got)
	}

	// At a phone's width the vault pages do not scroll sideways.
	b.createKey("locked", "wide", "")
	phone := newBrowser(t, e, 390, 844)
	phone.signIn("admin", e.Inst.AdminPassword)
	for _, p := range []string{"/console/vaults", "/console/vault?name=ops", "/console/vault/access?name=ops", "/console/vault/deleted?name=locked",
		"/console/vault/network?name=ops", "/console/key?vault=locked&name=wide", "/console/vault/delete?name=ops"} {
		phone.run("open "+p, chromedp.Navigate(phone.base+p), chromedp.WaitVisible(chromedp.CSS("main")))
		if get(phone, "width", chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)) {
			t.Errorf("%s scrolls sideways at 390 px", p)
		}
	}
}
