package console_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestConsoleInBrowser drives Debian's Chromium through the console as the administrator:
// sign in, repositories after a go-containerregistry push, a tag with its referrers and a
// stored XSS attempt, a confirmed delete, changing the registry's key to a customer-managed
// key in a second vault (refused first for lack of permission), creating and rotating a
// key, a repository token's one-time secret, the audit trail filtered and verified, sign out.
func TestConsoleInBrowser(t *testing.T) {
	e := start(t)
	refDigest := e.pushReferrer(t, "team/app", e.digest, "application/vnd.example.sbom.v1")
	e.push(t, "admin", e.Inst.AdminPassword, "team/app:old", nil)
	b := newBrowser(t, e, 1280, 900)

	// A browser asking for / lands on the sign-in page.
	b.run("open /", chromedp.Navigate(b.base+"/"), chromedp.WaitVisible(chromedp.CSS("#username")))
	loc := get(b, "location", chromedp.Location())
	if !strings.Contains(loc, "/console/signin") {
		t.Fatalf("/ led to %s, want the sign-in page", loc)
	}
	b.doc("signin")
	b.signIn("admin", e.Inst.AdminPassword)
	if got := b.text("#repo-count"); got != "1" {
		t.Fatalf("overview shows %q repositories, want 1", got)
	}
	if got := b.text("#key-state"); got != "Key accessible" {
		t.Fatalf("overview key state %q", got)
	}
	b.doc("overview")

	// Repositories → tags → the tag.
	b.run("repositories", chromedp.Navigate(b.base+"/console/repositories"), chromedp.WaitVisible(chromedp.CSS("#repositories")))
	if got := b.text("#repositories tbody tr td a"); got != "team/app" {
		t.Fatalf("first repository %q", got)
	}
	b.doc("repositories")
	b.run("open repository", chromedp.Click(chromedp.CSS(`#repositories a[href*="team%2Fapp"]`)), chromedp.WaitVisible(chromedp.CSS("#tags")))
	if got := b.text("#tags"); !strings.Contains(got, "v1") || !strings.Contains(got, "old") {
		t.Fatalf("tags table: %q", got)
	}
	b.doc("tags")
	b.run("open tag", chromedp.Click(chromedp.CSS(`#tags a[href*="tag=v1"]`)), chromedp.WaitVisible(chromedp.CSS("#digest")))
	if got := b.text("#digest"); got != e.digest {
		t.Fatalf("tag page digest %q, want %s", got, e.digest)
	}
	if got := b.text("#referrers"); !strings.Contains(got, "application/vnd.example.sbom.v1") || !strings.Contains(got, refDigest[:19]) {
		t.Fatalf("referrers table %q, want the SBOM %s", got, refDigest)
	}
	if got := b.text("#pull-0"); got != "docker pull "+e.host+"/team/app:v1" {
		t.Fatalf("pull command %q", got)
	}
	// The stored XSS attempt in the annotation is text: no script ran, no element was made.
	title := get(b, "title", chromedp.Title())
	injected := get(b, "xss", chromedp.Evaluate[int](`document.querySelectorAll("dd.annotation script, dd.annotation img").length`))
	if got := b.text("dd.annotation"); got != xss || title == "pwned" || injected != 0 {
		t.Fatalf("annotation rendered as %q (title %q, %d injected elements)", got, title, injected)
	}
	b.doc("tag")

	// Delete "old" behind a confirmation that names it.
	b.run("delete old", chromedp.Navigate(b.base+"/console/tag?repository=team/app&tag=old"), chromedp.Click(chromedp.CSS("#delete")), chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if got := b.text("#confirm-text"); !strings.Contains(got, "old") || !strings.Contains(got, "team/app") {
		t.Fatalf("confirmation %q does not name the tag", got)
	}
	b.run("mistyped", chromedp.SendKeys(chromedp.CSS("#confirm"), "olx"), chromedp.Click(chromedp.CSS("#confirm-delete")), chromedp.WaitVisible(chromedp.CSS("#problem")))
	b.run("confirm", chromedp.SendKeys(chromedp.CSS("#confirm"), "old"), chromedp.Click(chromedp.CSS("#confirm-delete")), chromedp.WaitVisible(chromedp.CSS("#tags")))
	if got := b.text("#tags"); strings.Contains(got, "old") || !strings.Contains(got, "v1") {
		t.Fatalf("after deleting old, tags: %q", got)
	}

	// Change the registry's key to a customer-managed key in a second vault.
	e.CreateVault(t, "cmk", nil)
	var who struct{ ID string }
	e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	e.SetPolicy(t, "cmk", who.ID, "get", "list", "create", "update", "rotate", "getrotationpolicy", "delete")
	e.MustDo(t, "POST", "/coffer/v1/vaults/cmk/keys/registry-key/create", map[string]any{"kty": "RSA", "size": 2048}, nil)
	b.run("encryption", chromedp.Navigate(b.base+"/console/encryption"), chromedp.WaitVisible(chromedp.CSS("#key-source")))
	if got := b.text("#key-source"); !strings.HasPrefix(got, "Platform-managed") {
		t.Fatalf("key source before: %q", got)
	}
	changeKey := []chromedp.Action[chromedp.Void]{
		chromedp.SetValue(chromedp.CSS("#vault"), "cmk"), chromedp.SendKeys(chromedp.CSS("#key"), "registry-key"),
		chromedp.SetValue(chromedp.CSS("#identity-select"), "[system]"), chromedp.Click(chromedp.CSS("#save-key")),
	}
	b.run("change key without permission", append(changeKey, chromedp.WaitVisible(chromedp.CSS("#problem")))...)
	if got := b.text("#problem"); !strings.Contains(strings.ToLower(got), "permission") && !strings.Contains(strings.ToLower(got), "forbidden") && !strings.Contains(strings.ToLower(got), "denied") {
		t.Fatalf("refusal without permission says %q", got)
	}
	if got := b.text("#key-source"); !strings.HasPrefix(got, "Platform-managed") {
		t.Fatalf("key source changed although refused: %q", got)
	}
	e.SetPolicy(t, "cmk", systemIdentity(t, e), "get", "wrapKey", "unwrapKey")
	b.run("change key", append([]chromedp.Action[chromedp.Void]{chromedp.Navigate(b.base + "/console/encryption"), chromedp.WaitVisible(chromedp.CSS("#vault"))}, changeKey...)...)
	b.waitText("#done", "The registry's key is now")
	if got := b.text("#key-source"); !strings.HasPrefix(got, "Customer-managed") {
		t.Fatalf("key source after: %q", got)
	}
	if got := b.text("#key-id"); !strings.Contains(got, "/keys/registry-key") {
		t.Fatalf("key id after: %q", got)
	}
	if got := b.text("#accessible"); !strings.HasPrefix(got, "yes") {
		t.Fatalf("key accessible after: %q", got)
	}
	b.doc("encryption")
	// Rotate the key in its vault, then "Rotate now": the registry moves to the new version.
	before := b.text("#versioned-key-id")
	var rotated struct{ Kid string }
	e.MustDo(t, "POST", "/coffer/v1/vaults/cmk/keys/registry-key/rotate", nil, &rotated)
	b.run("rotate now", chromedp.Click(chromedp.CSS("#rotate-now")))
	b.waitText("#done", "Rotation check done")
	if after := b.text("#versioned-key-id"); after == before || after != rotated.Kid {
		t.Fatalf("after Rotate now the versioned key id is %q (before %q, the vault's newest %q)", after, before, rotated.Kid)
	}

	// Create a key in the vault and rotate it.
	b.run("vault", chromedp.Navigate(b.base+"/console/vault?name=cmk"), chromedp.WaitVisible(chromedp.CSS("#create-key")),
		chromedp.SendKeys(chromedp.CSS("#key-name"), "browser-key"), chromedp.Click(chromedp.CSS("#create")), chromedp.WaitVisible(chromedp.CSS("#kid")))
	if got := b.text("#done"); !strings.HasPrefix(got, "Created version") {
		t.Fatalf("after create: %q", got)
	}
	b.run("rotate", chromedp.Click(chromedp.CSS("#rotate")))
	b.waitText("#done", "Rotated")
	versions := get(b, "versions", chromedp.Evaluate[int](`document.querySelectorAll("#versions tbody tr").length`))
	if versions != 2 {
		t.Fatalf("%d versions listed after a rotation, want 2", versions)
	}
	b.doc("key")
	b.run("disable a version", chromedp.Click(chromedp.CSS(`#versions tbody tr:first-child button`)))
	b.waitText("#done", "disabled.")
	if got := b.text("#versions tbody"); strings.Count(got, "false") != 1 {
		t.Fatalf("versions after disabling one: %q", got)
	}
	b.run("vault page", chromedp.Navigate(b.base+"/console/vault?name=cmk"), chromedp.WaitVisible(chromedp.CSS("#keys")))
	b.doc("vault")

	// A repository token: its secret is shown once.
	b.run("create token", chromedp.Navigate(b.base+"/console/access"), chromedp.WaitVisible(chromedp.CSS("#create-token")),
		chromedp.SendKeys(chromedp.CSS("#token-name"), "ci-bot"), chromedp.SendKeys(chromedp.CSS("#token-repo"), "team/app"), chromedp.Click(chromedp.CSS(`input[name="content/write"]`)),
		chromedp.Click(chromedp.CSS("#create-token-button")), chromedp.WaitVisible(chromedp.CSS("#token-password")))
	secret := b.text("#token-password")
	if len(secret) < 20 {
		t.Fatalf("token secret %q", secret)
	}
	b.doc("access")
	b.run("access again", chromedp.Navigate(b.base+"/console/access"), chromedp.WaitVisible(chromedp.CSS("#tokens")))
	page := get(b, "page", chromedp.OuterHTML(chromedp.CSS("html")))
	if strings.Contains(page, secret) || !strings.Contains(page, "ci-bot") {
		t.Fatal("the token's secret is shown again, or the token is not listed")
	}
	// The secret works with a registry client.
	e.push(t, "ci-bot", secret, "team/app:ci", nil)

	// The audit trail, filtered, and its chain verified.
	b.run("audit", chromedp.Navigate(b.base+"/console/audit"), chromedp.WaitVisible(chromedp.CSS("#audit-filters")),
		chromedp.SendKeys(chromedp.CSS("#f-key"), "browser-key"), chromedp.Click(chromedp.CSS("#filter")))
	b.waitURL("key=browser-key") // the filter is a GET form: read the page it loads, not the one before
	rows := b.text("#audit tbody")
	if !strings.Contains(rows, "KeyRotate") || !strings.Contains(rows, "KeyCreate") || strings.Contains(rows, "registry-key") {
		t.Fatalf("audit filtered on browser-key: %q", rows)
	}
	b.run("verify", chromedp.Click(chromedp.CSS("#verify")), chromedp.WaitVisible(chromedp.CSS("#verify-result")))
	if got := b.text("#verify-result"); !strings.HasPrefix(got, "Chain verified") {
		t.Fatalf("verify: %q", got)
	}
	b.doc("audit")

	// Sign out: the session is gone, the pages send the browser to sign in again.
	b.run("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.Navigate(b.base+"/console/repositories"), chromedp.WaitVisible(chromedp.CSS("#username")))
	loc = get(b, "location", chromedp.Location())
	if !strings.Contains(loc, "/console/signin?next=") {
		t.Fatalf("after sign-out, /console/repositories led to %s", loc)
	}
}

// TestConsolePhoneWidth renders the overview and a tag at a phone's width with no
// horizontal scrolling of the page itself.
func TestConsolePhoneWidth(t *testing.T) {
	e := start(t)
	b := newBrowser(t, e, 390, 844)
	b.signIn("admin", e.Inst.AdminPassword)
	for _, p := range []string{"/console/", "/console/tag?repository=team/app&tag=v1", "/console/audit"} {
		b.run("open "+p, chromedp.Navigate(b.base+p), chromedp.WaitVisible(chromedp.CSS("main")))
		overflow := get(b, "width", chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
		if overflow {
			t.Errorf("%s scrolls sideways at 390 px", p)
		}
	}
	b.run("overview", chromedp.Navigate(b.base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#repo-count")))
	b.doc("overview-phone")
}

func systemIdentity(t *testing.T, e *env) string {
	t.Helper()
	var list struct {
		Value []struct{ ID, Kind string }
	}
	e.MustDo(t, "GET", "/coffer/v1/managedIdentities", nil, &list)
	for _, p := range list.Value {
		if p.Kind == "systemAssignedIdentity" {
			return p.ID
		}
	}
	t.Fatal("no system identity")
	return ""
}
