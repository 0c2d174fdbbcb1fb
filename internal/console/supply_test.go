package console_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// pull GETs ref's manifest with go-containerregistry as user, as a runtime would.
func (e *env) pull(t testing.TB, user, password, ref string) error {
	t.Helper()
	_, err := remote.Get(mustRef(t, e.host+"/"+ref), e.remoteOpts(user, password)...)
	return err
}

// TestConsoleSignaturesInBrowser: in Chromium, an anchor uploaded as a cosign.pub file and
// an enforce rule (after a refused one, with the service's words) make go-containerregistry's
// pull of an unsigned image fail while the signed one pulls; the tag page shows the verdict;
// deleting the anchor (typed confirmation) makes the signed one fail too; editing the rule
// to audit lets both pull again.
func TestConsoleSignaturesInBrowser(t *testing.T) {
	e := start(t)
	pub := e.cosignSign(t, "team/app", e.digest)
	e.push(t, "admin", e.Inst.AdminPassword, "team/app:unsigned", nil)
	pubFile := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(pubFile, []byte(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := e.Inst.AdminPassword
	b := newBrowser(t, e, 1280, 900)
	b.signIn("admin", admin)

	b.run("signatures page", chromedp.Navigate(b.base+"/console/signatures"), chromedp.WaitVisible(chromedp.CSS("#no-anchors")))
	if got := b.text("#no-rules"); !strings.Contains(got, "every repository is off") {
		t.Fatalf("empty policy says %q", got)
	}
	b.run("add anchor", chromedp.SendKeys(chromedp.CSS("#anchor-name"), "release-key"),
		chromedp.SetUploadFiles(chromedp.CSS("#anchor-file"), []string{pubFile}), chromedp.Click(chromedp.CSS("#add-anchor-button")))
	b.waitText("#done", "Trust anchor release-key added")
	if got := b.text("#anchors tbody"); !strings.Contains(got, "release-key") || !strings.Contains(got, "cosign") || !strings.Contains(got, "public key") {
		t.Fatalf("anchors table %q", got)
	}
	// A rule the service refuses: its reason in words, the form kept as typed.
	b.run("bad rule", chromedp.SendKeys(chromedp.CSS("#rule-scope"), "Team/App!"), chromedp.SetValue(chromedp.CSS("#rule-mode"), "enforce"),
		chromedp.Click(chromedp.CSS("#save-rule")))
	if got := b.waitText("#problem", "not a repository name"); !strings.Contains(got, "Team/App!") || strings.Contains(got, "{") {
		t.Fatalf("refusal says %q", got)
	}
	if got := get(b, "scope kept", chromedp.Value(chromedp.CSS("#rule-scope"))); got != "Team/App!" {
		t.Fatalf("the refused form lost its scope: %q", got)
	}
	b.run("enforce rule", chromedp.SetValue(chromedp.CSS("#rule-scope"), "team/*"), chromedp.SetValue(chromedp.CSS("#rule-mode"), "enforce"),
		chromedp.Click(chromedp.CSS(`input[name="cosignKeys"][value="release-key"]`)), chromedp.Click(chromedp.CSS("#save-rule")))
	b.waitText("#done", "Signature policy saved")
	if got := b.text("#rules tbody"); !strings.Contains(got, "team/*") || !strings.Contains(got, "enforce") || !strings.Contains(got, "release-key") {
		t.Fatalf("rules table %q", got)
	}
	b.doc("signatures")

	// The policy works on the registry API, seen by a real client.
	if err := e.pull(t, "admin", admin, "team/app:unsigned"); err == nil || !strings.Contains(err.Error(), "DENIED") || !strings.Contains(err.Error(), "no signature") {
		t.Fatalf("pull of the unsigned image under enforce: %v, want DENIED: no signature", err)
	}
	if err := e.pull(t, "admin", admin, "team/app:v1"); err != nil {
		t.Fatalf("pull of the signed image under enforce: %v", err)
	}
	// The console's own read goes through the same gate: the unsigned tag's page shows the refusal.
	b.run("unsigned tag page", chromedp.Navigate(b.base+"/console/tag?repository=team/app&tag=unsigned"), chromedp.WaitVisible(chromedp.CSS("main")))
	if got := b.text("main"); !strings.Contains(got, "no signature") || !strings.Contains(got, "enforce") {
		t.Fatalf("the unsigned tag's page under enforce shows %q", got)
	}
	b.run("tag page", chromedp.Navigate(b.base+"/console/tag?repository=team/app&tag=v1"), chromedp.WaitVisible(chromedp.CSS("#sig-verified")))
	if got := b.text("#sig-verified"); !strings.HasPrefix(got, "verified") || !strings.Contains(got, "cosign") || !strings.Contains(got, "release-key") {
		t.Fatalf("tag page verdict %q", got)
	}
	if got := b.text("#sig-policy"); !strings.Contains(got, "enforce") || !strings.Contains(got, "team/*") {
		t.Fatalf("tag page policy %q", got)
	}

	// Delete the anchor: a mistyped name keeps it, the right one deletes it.
	b.run("delete anchor", chromedp.Navigate(b.base+"/console/signatures"), chromedp.WaitVisible(chromedp.CSS("#anchors")),
		chromedp.Click(chromedp.CSS(`#anchors a[href*="anchor/delete"]`)), chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if got := b.text("#confirm-text"); !strings.Contains(got, "release-key") || !strings.Contains(got, "stop verifying") {
		t.Fatalf("confirmation %q", got)
	}
	b.run("mistyped", chromedp.SendKeys(chromedp.CSS("#confirm"), "release"), chromedp.Click(chromedp.CSS("#confirm-delete")))
	b.waitText("#problem", "does not match")
	b.run("confirm", chromedp.SendKeys(chromedp.CSS("#confirm"), "release-key"), chromedp.Click(chromedp.CSS("#confirm-delete")))
	b.waitText("#done", "release-key deleted")
	if err := e.pull(t, "admin", admin, "team/app:v1"); err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Fatalf("pull of v1 after its anchor was deleted: %v, want DENIED", err)
	}
	// Edit the rule to audit (the deleted anchor's name dropped from it): both pull again.
	b.run("edit rule", chromedp.Navigate(b.base+"/console/signatures?edit="+url.QueryEscape("team/*")), chromedp.WaitVisible(chromedp.CSS("#rule-form")))
	if got := get(b, "edited scope", chromedp.Value(chromedp.CSS("#rule-scope"))); got != "team/*" {
		t.Fatalf("edit form scope %q", got)
	}
	b.run("to audit", chromedp.SetValue(chromedp.CSS("#rule-mode"), "audit"), chromedp.Click(chromedp.CSS("#save-rule")))
	b.waitText("#problem", `"release-key" is not a cosign anchor`)
	b.run("to audit without the key", chromedp.SetValue(chromedp.CSS("#rule-mode"), "audit"),
		chromedp.Click(chromedp.CSS(`input[name="cosignKeys"][value="release-key"]`)), chromedp.Click(chromedp.CSS("#save-rule")))
	b.waitText("#done", "Signature policy saved")
	var pol wire.SignaturePolicy
	e.MustDo(t, "GET", "/coffer/v1/registry/signatures/policy", nil, &pol)
	if len(pol.Repositories) != 1 || pol.Repositories[0].Scope != "team/*" || pol.Repositories[0].Mode != "audit" || len(pol.Repositories[0].CosignKeys) != 0 {
		t.Fatalf("the API's policy after the edit: %+v", pol.Repositories)
	}
	if err := e.pull(t, "admin", admin, "team/app:unsigned"); err != nil {
		t.Fatalf("pull of the unsigned image under audit: %v", err)
	}
}

// TestConsoleKMSInBrowser: configure a PMK cluster in Chromium and see its securityProfile
// (and the API agree); rotate it; a change to a CMK its plugin identity cannot use is
// refused after the confirmation, in words; with an access policy it is made and the PMK
// is listed decrypt-only; removing needs the typed name.
func TestConsoleKMSInBrowser(t *testing.T) {
	e := start(t)
	sp := e.ServicePrincipal(t, "kms-prod")
	e.CreateVault(t, "team", nil)
	var who struct{ ID string }
	e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	e.SetPolicy(t, "team", who.ID, "get", "list", "create")
	e.MustDo(t, "POST", "/coffer/v1/vaults/team/keys/k8s/create", map[string]any{"kty": "RSA", "size": 2048}, nil)
	b := newBrowser(t, e, 1280, 900)
	b.signIn("admin", e.Inst.AdminPassword)

	b.run("kms page", chromedp.Navigate(b.base+"/console/kms"), chromedp.WaitVisible(chromedp.CSS("#no-clusters")),
		chromedp.SendKeys(chromedp.CSS("#kms-name"), "prod"), chromedp.SendKeys(chromedp.CSS("#kms-identity"), "kms-prod"),
		chromedp.Click(chromedp.CSS("#create-cluster-button")), chromedp.WaitVisible(chromedp.CSS("#security-profile")))
	b.waitText("#done", "Cluster configured")
	prof := b.text("#security-profile")
	for _, want := range []string{`"azureKeyVaultKms"`, `"enabled": true`, `/keys/kms-prod"`, `"keyVaultNetworkAccess": "Public"`, `"keyVaultResourceId": "https://coffer-kms.`, `"infrastructureEncryption": "Disabled"`} {
		if !strings.Contains(prof, want) {
			t.Fatalf("securityProfile lacks %s:\n%s", want, prof)
		}
	}
	if got := b.text("#kms-management"); !strings.HasPrefix(got, "PMK") {
		t.Fatalf("key management %q", got)
	}
	var k wire.KMSCluster
	e.MustDo(t, "GET", "/coffer/v1/kms/clusters/prod", nil, &k)
	if k.KeyManagement != "PMK" || k.Identity != "kms-prod" || !strings.Contains(prof, k.SecurityProfile.AzureKeyVaultKms.KeyID) {
		t.Fatalf("the API's cluster %+v", k)
	}
	b.run("rotate", chromedp.Click(chromedp.CSS("#rotate-cluster-button")))
	b.waitText("#done", "new version of the platform-managed key")

	// To a CMK the plugin's identity may not use: confirmed, then refused in words.
	cmk := e.HostURL("team") + "/keys/k8s"
	toCMK := []chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS("#upd-cmk")), chromedp.SendKeys(chromedp.CSS("#upd-keyid"), cmk),
		chromedp.Click(chromedp.CSS("#update-cluster-button")), chromedp.WaitVisible(chromedp.CSS("#change-summary"))}
	b.run("to CMK", toCMK...)
	if got := b.text("#change-summary"); !strings.Contains(got, "from PMK") || !strings.Contains(got, "to CMK") || !strings.Contains(got, cmk) || !strings.Contains(got, "decrypt-only") {
		t.Fatalf("confirmation %q", got)
	}
	b.run("confirm", chromedp.Click(chromedp.CSS("#confirm-update-button")))
	if got := b.waitText("#problem", "cannot use key"); !strings.Contains(got, "kms-prod") {
		t.Fatalf("refusal %q", got)
	}
	if got := b.text("#kms-management"); !strings.HasPrefix(got, "PMK") {
		t.Fatalf("a refused change changed the key management to %q", got)
	}
	e.SetPolicy(t, "team", sp.ObjectID, "get", "wrapKey", "unwrapKey")
	b.run("to CMK again", append([]chromedp.Action[chromedp.Void]{chromedp.Navigate(b.base + "/console/kms/cluster?name=prod"), chromedp.WaitVisible(chromedp.CSS("#update-cluster"))}, toCMK...)...)
	b.run("confirm again", chromedp.Click(chromedp.CSS("#confirm-update-button")))
	b.waitText("#done", "Key changed")
	if got := b.text("#kms-management"); !strings.HasPrefix(got, "CMK") {
		t.Fatalf("key management after the change %q", got)
	}
	if got := b.text("#decrypt-only tbody"); !strings.Contains(got, "/keys/kms-prod") || !strings.Contains(got, "PMK") {
		t.Fatalf("decrypt-only keys %q", got)
	}
	if got := b.text("#kms-key-id"); !strings.EqualFold(got, cmk) {
		t.Fatalf("key id %q, want %s", got, cmk)
	}
	b.doc("kms-cluster")
	b.run("list", chromedp.Navigate(b.base+"/console/kms"), chromedp.WaitVisible(chromedp.CSS("#clusters")))
	if got := b.text("#clusters tbody"); !strings.Contains(got, "prod") || !strings.Contains(got, "CMK") || !strings.Contains(got, "never reported") {
		t.Fatalf("clusters table %q", got)
	}
	b.doc("kms")
	b.run("back", chromedp.Navigate(b.base+"/console/kms/cluster?name=prod"), chromedp.WaitVisible(chromedp.CSS("#delete-cluster")))

	// Remove: the typed name must match.
	b.run("mistyped", chromedp.SendKeys(chromedp.CSS("#delete-confirm"), "pro"), chromedp.Click(chromedp.CSS("#delete-cluster-button")))
	b.waitText("#problem", "does not match")
	b.run("remove", chromedp.SendKeys(chromedp.CSS("#delete-confirm"), "prod"), chromedp.Click(chromedp.CSS("#delete-cluster-button")))
	b.waitText("#done", "Cluster prod removed")
	b.text("#no-clusters")
	if err := e.Do("GET", "/coffer/v1/kms/clusters/prod", nil, nil); err == nil {
		t.Fatal("the cluster is still there after the console removed it")
	}
}

// TestConsoleRolesInBrowser: assign AcrPull to a user at a repository scope in Chromium,
// see it listed (and filtered by scope), see it take effect (the user's go-containerregistry
// pull works, and the API lists it), a bad scope refused in words, then remove it.
func TestConsoleRolesInBrowser(t *testing.T) {
	e := start(t)
	e.MustDo(t, "POST", "/coffer/v1/users", map[string]string{"name": "dev", "password": "dev-password-12"}, nil)
	if err := e.pull(t, "dev", "dev-password-12", "team/app:v1"); err == nil {
		t.Fatal("dev pulls before any role")
	}
	b := newBrowser(t, e, 1280, 900)
	b.signIn("admin", e.Inst.AdminPassword)
	b.run("roles page", chromedp.Navigate(b.base+"/console/roles"), chromedp.WaitVisible(chromedp.CSS("#assign-role")))
	b.run("bad scope", chromedp.SendKeys(chromedp.CSS("#assignee"), "dev"), chromedp.SetValue(chromedp.CSS("#role"), "AcrPull"),
		chromedp.SetValue(chromedp.CSS("#scope-kind"), "repository"), chromedp.SendKeys(chromedp.CSS("#scope-repository"), "Team/App"),
		chromedp.Click(chromedp.CSS("#assign-button")))
	b.waitText("#problem", "Team/App")
	b.run("assign", chromedp.SetValue(chromedp.CSS("#scope-repository"), "team/app"), chromedp.Click(chromedp.CSS("#assign-button")))
	b.waitText("#done", "Assigned AcrPull to dev at /registry/repositories/team/app")
	if got := b.text("#assignments tbody"); !strings.Contains(got, "/registry/repositories/team/app") || !strings.Contains(got, "dev") {
		t.Fatalf("assignments %q", got)
	}
	b.doc("roles")
	// Effective: the API lists it for dev, and dev's pull works.
	var list wire.List[wire.RoleAssignment]
	e.MustDo(t, "GET", "/coffer/v1/role-assignments?assignee=dev", nil, &list)
	if len(list.Value) != 1 || list.Value[0].Role != "AcrPull" || list.Value[0].Scope != "/registry/repositories/team/app" {
		t.Fatalf("the API lists %+v", list.Value)
	}
	if err := e.pull(t, "dev", "dev-password-12", "team/app:v1"); err != nil {
		t.Fatalf("dev's pull after AcrPull at team/app: %v", err)
	}
	// Filtered by a scope it applies at, and by one it does not.
	b.run("filter", chromedp.Navigate(b.base+"/console/roles?assignee=dev&scope=repository/team/app"), chromedp.WaitVisible(chromedp.CSS("#assignments")))
	b.run("filter other", chromedp.Navigate(b.base+"/console/roles?assignee=dev&scope=repository/other"), chromedp.WaitVisible(chromedp.CSS("#no-assignments")))
	// Remove it.
	b.run("remove", chromedp.Navigate(b.base+"/console/roles?assignee=dev"), chromedp.WaitVisible(chromedp.CSS("#assignments")),
		chromedp.Click(chromedp.CSS(`#assignments a[href*="roles/delete"]`)), chromedp.WaitVisible(chromedp.CSS("#confirm-unassign")))
	if got := b.text("#confirm-text"); !strings.Contains(got, "AcrPull") || !strings.Contains(got, "dev") {
		t.Fatalf("confirmation %q", got)
	}
	b.run("confirm", chromedp.Click(chromedp.CSS("#confirm-unassign")))
	b.waitText("#done", "Removed the assignment of AcrPull from dev")
	e.MustDo(t, "GET", "/coffer/v1/role-assignments?assignee=dev", nil, &list)
	if len(list.Value) != 0 {
		t.Fatalf("after removing, the API lists %+v", list.Value)
	}
}

// TestConsoleSupplySecurity: the signature, KMS and role forms refuse a POST without the
// CSRF token; a Reader sees none of their controls and the API refuses them if forced;
// an anchor name and an exempt id holding a script render as text.
func TestConsoleSupplySecurity(t *testing.T) {
	e := start(t)
	e.ServicePrincipal(t, "kms-prod")
	e.MustDo(t, "POST", "/coffer/v1/users", map[string]string{"name": "reader", "password": "reader-password-1"}, nil)
	e.MustDo(t, "POST", "/coffer/v1/role-assignments", map[string]string{"role": "Reader", "assignee": "reader", "scope": "/"}, nil)
	admin, _ := e.session(t, "admin", e.Inst.AdminPassword)
	forms := map[string]url.Values{
		"/console/signatures/anchors":       {"name": {"a1"}, "kind": {"cosign"}, "source": {"pem"}, "pem": {"x"}},
		"/console/signatures/rules":         {"scope": {"*"}, "mode": {"enforce"}, "version": {"0"}},
		"/console/signatures/rules/delete":  {"scope": {"*"}, "version": {"0"}},
		"/console/signatures/policy":        {"document": {`{"repositories":[{"scope":"*","mode":"enforce"}]}`}},
		"/console/signatures/anchor/delete": {"name": {"a1"}, "confirm": {"a1"}},
		"/console/kms/clusters":             {"name": {"prod"}, "keyManagement": {"PMK"}, "identity": {"kms-prod"}},
		"/console/kms/cluster/update":       {"name": {"prod"}, "keyManagement": {"PMK"}, "confirm": {"yes"}},
		"/console/kms/cluster/rotate":       {"name": {"prod"}},
		"/console/kms/cluster/delete":       {"name": {"prod"}, "confirm": {"prod"}},
		"/console/roles":                    {"assignee": {"reader"}, "role": {"Owner"}, "kind": {"root"}},
		"/console/roles/delete":             {"id": {"x"}},
	}
	unchanged := func(t *testing.T) {
		t.Helper()
		var pol wire.SignaturePolicy
		e.MustDo(t, "GET", "/coffer/v1/registry/signatures/policy", nil, &pol)
		var anchors, clusters, owners wire.List[struct{ Name string }]
		e.MustDo(t, "GET", "/coffer/v1/registry/signatures/anchors", nil, &anchors)
		e.MustDo(t, "GET", "/coffer/v1/kms/clusters", nil, &clusters)
		e.MustDo(t, "GET", "/coffer/v1/role-assignments?assignee=reader&role=Owner", nil, &owners)
		if len(pol.Repositories) != 0 || len(anchors.Value) != 0 || len(clusters.Value) != 0 || len(owners.Value) != 0 {
			t.Fatalf("a refused POST changed something: %d rules, %d anchors, %d clusters, %d Owner assignments", len(pol.Repositories), len(anchors.Value), len(clusters.Value), len(owners.Value))
		}
	}

	t.Run("no CSRF token", func(t *testing.T) {
		for path, form := range forms {
			if code, _ := e.post(t, admin, path, form, nil); code != http.StatusForbidden {
				t.Errorf("POST %s without CSRF = %d, want 403", path, code)
			}
		}
		unchanged(t)
	})

	t.Run("Reader sees no control and is refused if forced", func(t *testing.T) {
		rc, _ := e.session(t, "reader", "reader-password-1")
		pages := map[string][]string{
			"/console/signatures": {`id="sig-readonly"`},
			"/console/kms":        {`id="kms-readonly"`},
			"/console/roles":      {`id="roles-readonly"`},
		}
		var csrf string
		for p, want := range pages {
			body := e.get(t, rc, p, http.StatusOK)
			for _, w := range want {
				if !strings.Contains(body, w) {
					t.Errorf("%s lacks %s", p, w)
				}
			}
			for _, control := range []string{`id="add-anchor"`, `id="rule-form"`, `id="policy-doc"`, `id="create-cluster"`, `id="assign-role"`, "Remove…", "Delete…"} {
				if strings.Contains(body, control) {
					t.Errorf("the Reader's %s offers %s", p, control)
				}
			}
			csrf = formToken(t, body, "csrf")
		}
		for path, form := range forms {
			f := url.Values{"csrf": {csrf}}
			for k, v := range form {
				f[k] = v
			}
			code, page := e.post(t, rc, path, f, nil)
			if path == "/console/roles/delete" || path == "/console/signatures/anchor/delete" || path == "/console/kms/cluster/update" ||
				path == "/console/kms/cluster/rotate" || path == "/console/kms/cluster/delete" || path == "/console/signatures/rules/delete" {
				// Nothing to change: refused or not found, never done.
				if code < 400 {
					t.Errorf("forced POST %s by a Reader = %d", path, code)
				}
				continue
			}
			if code != http.StatusForbidden || !strings.Contains(page, "Ask an Owner") {
				t.Errorf("forced POST %s by a Reader = %d, want 403 in words", path, code)
			}
		}
		unchanged(t)
	})

	t.Run("stored XSS renders as text", func(t *testing.T) {
		body := e.get(t, admin, "/console/signatures", http.StatusOK)
		csrf := formToken(t, body, "csrf")
		code, page := e.post(t, admin, "/console/signatures/anchors", url.Values{"csrf": {csrf}, "name": {xss}, "kind": {"cosign"}, "source": {"pem"}, "pem": {"x"}}, nil)
		if code != http.StatusBadRequest || strings.Contains(page, xss) || strings.Contains(page, "<img src=x") || !strings.Contains(page, "&lt;script&gt;document.title=") {
			t.Errorf("an anchor named with a script = %d; escaped: %v", code, strings.Contains(page, "&lt;script&gt;"))
		}
		code, _ = e.post(t, admin, "/console/signatures/rules", url.Values{"csrf": {csrf}, "scope": {"team/*"}, "mode": {"audit"}, "version": {"0"}, "exempt": {xss}}, nil)
		if code != http.StatusSeeOther {
			t.Fatalf("save a rule exempting a script-like id = %d", code)
		}
		for _, p := range []string{"/console/signatures", "/console/signatures?edit=team%2F%2A"} {
			body = e.get(t, admin, p, http.StatusOK)
			if strings.Contains(body, "<script>document") || strings.Contains(body, "<img src=x") || !strings.Contains(body, "&lt;script&gt;document.title=") {
				t.Errorf("%s carries the exempt id unescaped, or not at all", p)
			}
		}
	})
}

// TestConsoleSupplyPhoneWidth: the signatures, KMS and role pages do not scroll sideways
// at a phone's width.
func TestConsoleSupplyPhoneWidth(t *testing.T) {
	e := start(t)
	e.MustDo(t, "PUT", "/coffer/v1/registry/signatures/policy", wire.SignaturePolicy{Repositories: []wire.SignatureRule{{Scope: "team/*", Mode: wire.SignatureModeAudit, Exempt: []string{strings.Repeat("x", 100)}}}}, nil)
	b := newBrowser(t, e, 390, 844)
	b.signIn("admin", e.Inst.AdminPassword)
	for _, p := range []string{"/console/signatures", "/console/kms", "/console/roles"} {
		b.run("open "+p, chromedp.Navigate(b.base+p), chromedp.WaitVisible(chromedp.CSS("main")))
		if get(b, "width", chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)) {
			t.Errorf("%s scrolls sideways at 390 px", p)
		}
	}
}

// TestConsolePolicyDocument: the whole-document form sends the text as written, so the
// service's validation names what is wrong (and the text stays in the form); a valid one is
// saved; a rule saved from a page older than the policy is refused instead of overwriting.
func TestConsolePolicyDocument(t *testing.T) {
	e := start(t)
	admin, _ := e.session(t, "admin", e.Inst.AdminPassword)
	csrf := formToken(t, e.get(t, admin, "/console/signatures", http.StatusOK), "csrf")
	bad := `{"repositories":[{"scope":"*","mode":"strict"}]}`
	code, page := e.post(t, admin, "/console/signatures/policy", url.Values{"csrf": {csrf}, "document": {bad}}, nil)
	if code != http.StatusBadRequest || !strings.Contains(page, `mode &#34;strict&#34;: use off, audit or enforce`) || !strings.Contains(page, `&#34;mode&#34;:&#34;strict&#34;`) {
		t.Fatalf("a bad document = %d\n%s", code, page)
	}
	code, page = e.post(t, admin, "/console/signatures/policy", url.Values{"csrf": {csrf}, "document": {"{not json"}}, nil)
	if code != http.StatusBadRequest || !strings.Contains(page, `id="problem"`) {
		t.Fatalf("a document that is not JSON = %d\n%s", code, page)
	}
	code, _ = e.post(t, admin, "/console/signatures/policy", url.Values{"csrf": {csrf}, "document": {`{"repositories":[{"scope":"prod/*","mode":"audit"}]}`}}, nil)
	if code != http.StatusSeeOther {
		t.Fatalf("a good document = %d", code)
	}
	var pol wire.SignaturePolicy
	e.MustDo(t, "GET", "/coffer/v1/registry/signatures/policy", nil, &pol)
	if len(pol.Repositories) != 1 || pol.Repositories[0].Scope != "prod/*" {
		t.Fatalf("the API's policy %+v", pol.Repositories)
	}
	code, page = e.post(t, admin, "/console/signatures/rules", url.Values{"csrf": {csrf}, "scope": {"*"}, "mode": {"enforce"}, "version": {"0"}}, nil)
	if code != http.StatusConflict || !strings.Contains(page, "changed since this page was opened") {
		t.Fatalf("a rule saved from a stale page = %d\n%s", code, page)
	}
	e.MustDo(t, "GET", "/coffer/v1/registry/signatures/policy", nil, &pol)
	if len(pol.Repositories) != 1 {
		t.Fatalf("the stale save changed the policy: %+v", pol.Repositories)
	}
}

// TestConsoleVaultKeyAnchor: a cosign anchor naming a key in this server's vault is refused
// in the service's words until the registry's identity may read the key, then added; the
// page lists it as a vault key, and Refresh re-reads it.
func TestConsoleVaultKeyAnchor(t *testing.T) {
	e := start(t)
	e.CreateVault(t, "signing", nil)
	var who struct{ ID string }
	e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	e.SetPolicy(t, "signing", who.ID, "get", "list", "create")
	e.MustDo(t, "POST", "/coffer/v1/vaults/signing/keys/release/create", map[string]any{"kty": "EC", "curve": "P-256"}, nil)
	keyURL := e.HostURL("signing") + "/keys/release"
	admin, _ := e.session(t, "admin", e.Inst.AdminPassword)
	csrf := formToken(t, e.get(t, admin, "/console/signatures", http.StatusOK), "csrf")
	form := url.Values{"csrf": {csrf}, "name": {"release"}, "kind": {"cosign"}, "source": {"vault"}, "keyUrl": {keyURL}, "storeType": {"ca"}}
	code, page := e.post(t, admin, "/console/signatures/anchors", form, nil)
	if code != http.StatusBadRequest || !strings.Contains(page, "get and list key permissions") || !strings.Contains(page, `value="`+keyURL+`"`) {
		t.Fatalf("a vault key the registry may not read = %d\n%s", code, page)
	}
	e.SetPolicy(t, "signing", e.SystemIdentity(t), "get", "list")
	if code, page = e.post(t, admin, "/console/signatures/anchors", form, nil); code != http.StatusSeeOther {
		t.Fatalf("add the vault key anchor = %d\n%s", code, page)
	}
	page = e.get(t, admin, "/console/signatures", http.StatusOK)
	if !strings.Contains(page, "vault key <code>"+keyURL+"</code>") || strings.Contains(page, "trusts nothing") {
		t.Fatalf("the anchors table does not show the vault key:\n%s", page)
	}
	code, page = e.post(t, admin, "/console/signatures/anchor/refresh", url.Values{"csrf": {csrf}, "name": {"release"}}, nil)
	if code != http.StatusOK || !strings.Contains(page, "Anchor release re-read: it trusts versions ") {
		t.Fatalf("refresh = %d\n%s", code, page)
	}
}
