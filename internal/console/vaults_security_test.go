package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestConsoleVaultsSecurity: every vault form is refused without the page's CSRF token; a
// Reader sees the vault pages with no create, delete, policy, role or network controls (each
// with the reason), and the same requests forced with a valid token are refused by the API
// and change nothing; a key tag holding a script is text on every vault page; purging a
// purge-protected key, forced, is refused with the date.
func TestConsoleVaultsSecurity(t *testing.T) {
	e := start(t)
	e.CreateVault(t, "sec", nil)
	e.CreateVault(t, "locked", map[string]any{"enablePurgeProtection": true, "softDeleteRetentionInDays": 7})
	var who struct{ ID string }
	e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	for _, v := range []string{"sec", "locked"} {
		e.SetPolicy(t, v, who.ID, "all")
	}
	e.MustDo(t, "POST", "/coffer/v1/vaults/sec/keys/k1/create", map[string]any{"kty": "EC", "curve": "P-256", "tags": map[string]string{"note": xss}}, nil)
	e.MustDo(t, "POST", "/coffer/v1/vaults/locked/keys/gone/create", map[string]any{"kty": "EC", "curve": "P-256"}, nil)
	e.MustDo(t, "DELETE", "/coffer/v1/vaults/locked/keys/gone", nil, nil)
	admin, _ := e.session(t, "admin", e.Inst.AdminPassword)

	// The state-changing forms and what each would change.
	forms := []struct {
		path string
		form url.Values
	}{
		{"/console/vaults", url.Values{"name": {"forged"}, "model": {"policies"}, "retention": {"7"}, "default-action": {"Allow"}, "bypass": {"CofferServices"}}},
		{"/console/vault/delete", url.Values{"name": {"sec"}, "confirm": {"sec"}}},
		{"/console/vault/network", url.Values{"vault": {"sec"}, "default-action": {"Deny"}, "bypass": {"None"}}},
		{"/console/vault/properties", url.Values{"vault": {"sec"}, "retention": {"30"}, "purge-protection": {"on"}}},
		{"/console/vault/access/model", url.Values{"vault": {"sec"}, "rbac": {"true"}}},
		{"/console/vault/access/policy", url.Values{"vault": {"sec"}, "object": {"admin"}, "perm-get": {"on"}}},
		{"/console/vault/access/policy/delete", url.Values{"vault": {"sec"}, "object": {who.ID}}},
		{"/console/vault/access/role", url.Values{"vault": {"sec"}, "role": {"Owner"}, "assignee": {"admin"}}},
		{"/console/vault/deleted/recover", url.Values{"vault": {"locked"}, "key": {"gone"}}},
		{"/console/vault/deleted/purge", url.Values{"vault": {"locked"}, "key": {"gone"}, "confirm": {"gone"}}},
		{"/console/key/attributes", url.Values{"vault": {"sec"}, "name": {"k1"}, "expires": {"2031-01-01T00:00"}}},
		{"/console/key/rotationpolicy", url.Values{"vault": {"sec"}, "name": {"k1"}, "rotate-after-create": {"P30D"}}},
		{"/console/key/delete", url.Values{"vault": {"sec"}, "name": {"k1"}, "confirm": {"k1"}}},
	}
	// unchanged fails the test if any of those changes happened.
	unchanged := func(t *testing.T) {
		t.Helper()
		var v struct {
			EnableRbacAuthorization, EnablePurgeProtection bool
			SoftDeleteRetentionInDays                      int
			NetworkAcls                                    struct{ DefaultAction string }
		}
		e.MustDo(t, "GET", "/coffer/v1/vaults/sec", nil, &v)
		if v.EnableRbacAuthorization || v.EnablePurgeProtection || v.SoftDeleteRetentionInDays != 90 || v.NetworkAcls.DefaultAction != "Allow" {
			t.Errorf("vault sec changed: %+v", v)
		}
		if err := e.Do("GET", "/coffer/v1/vaults/forged", nil, nil); err == nil {
			t.Error("vault forged was created")
		}
		var k struct{ Attributes struct{ Exp *string } }
		e.MustDo(t, "GET", "/coffer/v1/vaults/sec/keys/k1", nil, &k)
		if k.Attributes.Exp != nil {
			t.Error("k1 got an expiry")
		}
		var pol struct {
			LifetimeActions []struct {
				Trigger struct{ TimeAfterCreate string }
			}
		}
		e.MustDo(t, "GET", "/coffer/v1/vaults/sec/keys/k1/rotationpolicy", nil, &pol)
		for _, la := range pol.LifetimeActions {
			if la.Trigger.TimeAfterCreate != "" {
				t.Errorf("k1 got a rotation policy: %+v", pol)
			}
		}
		if err := e.Do("GET", "/coffer/v1/vaults/locked/deletedkeys/gone", nil, nil); err != nil {
			t.Errorf("deleted key gone was recovered or purged: %v", err)
		}
		var pols struct{ Value []struct{ ObjectID string } }
		e.MustDo(t, "GET", "/coffer/v1/vaults/sec/access-policies", nil, &pols)
		if len(pols.Value) != 1 || pols.Value[0].ObjectID != who.ID {
			t.Errorf("access policies of sec changed: %+v", pols.Value)
		}
		var asgs struct{ Value []struct{ Scope string } }
		e.MustDo(t, "GET", "/coffer/v1/role-assignments?scope=/vaults/sec", nil, &asgs)
		for _, a := range asgs.Value {
			if a.Scope == "/vaults/sec" {
				t.Error("a role was assigned at /vaults/sec")
			}
		}
	}

	t.Run("no CSRF token is refused", func(t *testing.T) {
		for _, f := range forms {
			if code, _ := e.post(t, admin, f.path, f.form, nil); code != http.StatusForbidden {
				t.Errorf("POST %s without a CSRF token = %d, want 403", f.path, code)
			}
		}
		unchanged(t)
	})

	t.Run("stored XSS in a key tag renders as text", func(t *testing.T) {
		for _, p := range []string{"/console/vault?name=sec", "/console/key?vault=sec&name=k1"} {
			body := e.get(t, admin, p, http.StatusOK)
			if strings.Contains(body, xss) || strings.Contains(body, "<img src=x") || !strings.Contains(body, "&lt;script&gt;document.title=") {
				t.Errorf("%s does not show the key tag's script as text", p)
			}
		}
	})

	t.Run("purge protection: no purge offered, a forced purge is refused with the date", func(t *testing.T) {
		body := e.get(t, admin, "/console/vault/deleted?name=locked", http.StatusOK)
		if strings.Contains(body, "/console/vault/deleted/purge?") || !strings.Contains(body, "Purge protection is on: this key can be purged after") {
			t.Errorf("the deleted keys of a purge-protected vault offer a purge, or do not say why not")
		}
		body = e.get(t, admin, "/console/vault/deleted/purge?vault=locked&key=gone", http.StatusOK)
		if strings.Contains(body, `id="confirm-button"`) || !strings.Contains(body, `id="not-allowed"`) {
			t.Error("the purge confirmation of a protected key offers the purge")
		}
		code, page := e.post(t, admin, "/console/vault/deleted/purge", url.Values{"csrf": {formToken(t, body, "csrf")}, "vault": {"locked"}, "key": {"gone"}, "confirm": {"gone"}}, nil)
		if code == http.StatusSeeOther || !strings.Contains(page, "purge protection") || !strings.Contains(page, "can only be purged after") {
			t.Errorf("forced purge of a protected key = %d\n%s", code, page)
		}
		unchanged(t)
	})

	t.Run("soft-delete settings: purge protection turned on, then fixed", func(t *testing.T) {
		e.CreateVault(t, "props", nil)
		body := e.get(t, admin, "/console/vault?name=props", http.StatusOK)
		csrf := formToken(t, body, "csrf")
		if !strings.Contains(body, `id="props-purge-protection"`) {
			t.Fatal("no purge-protection control for the administrator")
		}
		if code, page := e.post(t, admin, "/console/vault/properties", url.Values{"csrf": {csrf}, "vault": {"props"}, "retention": {"30"}, "purge-protection": {"on"}}, nil); code != http.StatusSeeOther {
			t.Fatalf("set properties = %d\n%s", code, page)
		}
		var v struct {
			EnablePurgeProtection     bool
			SoftDeleteRetentionInDays int
		}
		e.MustDo(t, "GET", "/coffer/v1/vaults/props", nil, &v)
		if !v.EnablePurgeProtection || v.SoftDeleteRetentionInDays != 30 {
			t.Fatalf("after the form the vault has %+v", v)
		}
		if body := e.get(t, admin, "/console/vault?name=props", http.StatusOK); strings.Contains(body, `id="props-retention"`) || !strings.Contains(body, `id="purge-fixed"`) {
			t.Error("with purge protection on the page still offers to change the retention")
		}
		// Forced anyway, the vault service refuses and the page says why.
		code, page := e.post(t, admin, "/console/vault/properties", url.Values{"csrf": {csrf}, "vault": {"props"}, "retention": {"7"}}, nil)
		if code != http.StatusConflict || !strings.Contains(page, "cannot be changed") {
			t.Errorf("changing the retention under purge protection = %d\n%s", code, page)
		}
	})

	t.Run("a Reader sees no vault controls and forced changes are refused", func(t *testing.T) {
		e.MustDo(t, "POST", "/coffer/v1/users", map[string]string{"name": "viewer", "password": "viewer-password-1"}, nil)
		e.MustDo(t, "POST", "/coffer/v1/role-assignments", map[string]string{"role": "Reader", "assignee": "viewer", "scope": "/"}, nil)
		dev, _ := e.session(t, "viewer", "viewer-password-1")
		pages := []struct {
			path          string
			absent, shown []string
		}{
			{"/console/vaults", []string{`id="create-vault"`}, []string{`id="no-create-vault"`, ">sec<"}},
			{"/console/vault?name=sec", []string{`id="delete-vault"`, `id="create-key"`, `id="properties-form"`}, []string{`id="no-delete-vault"`, `id="no-create-key"`}},
			{"/console/vault/delete?name=sec", []string{`id="confirm-button"`}, []string{`id="not-allowed"`}},
			{"/console/vault/access?name=sec", []string{`id="policy-form"`, `id="role-form"`, `id="switch-model"`, "remove-policy"}, []string{`id="no-policy-change"`, `id="no-assign"`}},
			{"/console/vault/network?name=sec", []string{`id="network-form"`}, []string{`id="no-network-change"`}},
			{"/console/vault/deleted?name=locked", []string{`class="recover"`, "a.purge", `class="button danger purge"`}, []string{`id="deleted-problem"`, "Ask an Owner"}},
		}
		var csrf string
		for _, p := range pages {
			body := e.get(t, dev, p.path, http.StatusOK)
			csrf = formToken(t, body, "csrf")
			for _, a := range p.absent {
				if strings.Contains(body, a) {
					t.Errorf("%s offers the Reader %s", p.path, a)
				}
			}
			for _, s := range p.shown {
				if !strings.Contains(body, s) {
					t.Errorf("%s does not show the Reader %s", p.path, s)
				}
			}
		}
		for _, f := range forms {
			form := url.Values{"csrf": {csrf}}
			for k, v := range f.form {
				form[k] = v
			}
			code, page := e.post(t, dev, f.path, form, nil)
			if code != http.StatusForbidden {
				t.Errorf("forced POST %s by the Reader = %d, want 403\n%s", f.path, code, page)
			} else if !strings.Contains(page, "Ask an Owner") && !strings.Contains(page, "access polic") {
				t.Errorf("forced POST %s by the Reader: the refusal does not say what to do\n%s", f.path, page)
			}
		}
		unchanged(t)
	})
}
