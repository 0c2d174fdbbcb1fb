package console

import (
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// The vault pages: the list (with Create), a vault's keys, deleted keys, access (policies or
// role assignments) and network rules, a key's versions, attributes and rotation policy, and
// the typed confirmations before deleting a vault or a key and purging a deleted key. Every
// change is one management API call, the one the CLI's `coffer vault` commands make.

// vaultRoutes adds the vault pages' routes beside those console.go declares.
func (c *Console) vaultRoutes() {
	m := c.mux
	m.Handle("POST "+Prefix+"vaults", c.signedIn(c.createVault))
	vaultDel := confirmation{vaultField: "name", load: c.vaultDeleteConfirm,
		path: func(v, _ string) string { return vaultPath(v) },
		done: func(v, _ string) string { return Prefix + "vaults?" + url.Values{"deleted": {v}}.Encode() }}
	m.Handle("GET "+Prefix+"vault/delete", c.signedIn(c.showConfirmation(vaultDel)))
	m.Handle("POST "+Prefix+"vault/delete", c.signedIn(c.confirmed(vaultDel)))
	m.Handle("POST "+Prefix+"vault/properties", c.signedIn(c.setProperties))
	m.Handle("GET "+Prefix+"vault/deleted", c.signedIn(c.deletedKeys))
	m.Handle("POST "+Prefix+"vault/deleted/recover", c.signedIn(c.recoverKey))
	purge := confirmation{vaultField: "vault", itemField: "key", load: c.purgeConfirm,
		path: func(v, k string) string { return vaultPath(v) + "/deletedkeys/" + url.PathEscape(k) },
		done: func(v, k string) string {
			return Prefix + "vault/deleted?" + url.Values{"name": {v}, "purged": {k}}.Encode()
		}}
	m.Handle("GET "+Prefix+"vault/deleted/purge", c.signedIn(c.showConfirmation(purge)))
	m.Handle("POST "+Prefix+"vault/deleted/purge", c.signedIn(c.confirmed(purge)))
	m.Handle("GET "+Prefix+"vault/access", c.signedIn(c.vaultAccess))
	m.Handle("POST "+Prefix+"vault/access/model", c.signedIn(c.setAccessModel))
	m.Handle("POST "+Prefix+"vault/access/policy", c.signedIn(c.setPolicy))
	m.Handle("POST "+Prefix+"vault/access/policy/delete", c.signedIn(c.deletePolicy))
	m.Handle("POST "+Prefix+"vault/access/role", c.signedIn(c.assignVaultRole))
	m.Handle("POST "+Prefix+"vault/access/role/delete", c.signedIn(c.unassignVaultRole))
	m.Handle("GET "+Prefix+"vault/network", c.signedIn(c.vaultNetwork))
	m.Handle("POST "+Prefix+"vault/network", c.signedIn(c.setNetwork))
	m.Handle("POST "+Prefix+"key/attributes", c.signedIn(c.setKeyAttributes))
	m.Handle("POST "+Prefix+"key/rotationpolicy", c.signedIn(c.setRotationPolicy))
	keyDel := confirmation{vaultField: "vault", itemField: "name", load: c.keyDeleteConfirm,
		path: keyPath,
		done: func(v, k string) string {
			return Prefix + "vault/deleted?" + url.Values{"name": {v}, "deleted": {k}}.Encode()
		}}
	m.Handle("GET "+Prefix+"key/delete", c.signedIn(c.showConfirmation(keyDel)))
	m.Handle("POST "+Prefix+"key/delete", c.signedIn(c.confirmed(keyDel)))
}

// Why a vault control is missing, in words: the role or permission that would allow it.
const (
	needVaultManage   = "Needs vault/manage on the vault: the Owner or Contributor role there or above (ask an Owner, see Access)."
	needVaultCreate   = "Creating a vault needs vault/manage: the Owner or Contributor role at / (ask an Owner, see Access)."
	needAccessManage  = "Assigning roles needs access/manage on the vault: the Owner role there or above."
	purgeProtectedFmt = "Purge protection is on: this key can be purged after %s, when its retention ends; until then it can only be recovered."
)

// allowedKey reports whether the user may do a key action in v, asked of the management
// API's authorizer as the vault asks it: from the vault's access policies unless it uses
// RBAC. The API still decides every request (and also applies the network rules).
func (a *apiClient) allowedKey(v wire.Vault, action access.Action, scope access.Scope) bool {
	if a.c.cfg.Authz == nil {
		return true
	}
	return a.c.cfg.Authz.Authorize(a.r.Context(), access.Request{Principal: a.p, Action: action, Scope: scope, VaultUsesPolicies: !v.EnableRbacAuthorization}) == nil
}

// keyNeed says which permission (access-policy vault) or role (RBAC vault) a key action takes.
func keyNeed(v wire.Vault, perm string) string {
	if v.EnableRbacAuthorization {
		return "Needs the " + perm + " key permission from a role on the vault or key (Key Vault Crypto Officer or Key Vault Administrator)."
	}
	return "Needs the " + perm + " key permission in an access policy of this vault for you (see Access)."
}

// vaultTabs is the sub-navigation of a vault's pages.
func vaultTabs(name, current string) template.HTML {
	q := "?name=" + url.QueryEscape(name)
	var b strings.Builder
	b.WriteString(`<p><a href="` + Prefix + `vaults">Vaults</a> / `)
	if current == "vault" {
		b.WriteString(template.HTMLEscapeString(name))
	} else {
		b.WriteString(`<a href="` + template.HTMLEscapeString(Prefix+"vault"+q) + `">` + template.HTMLEscapeString(name) + `</a>`)
	}
	b.WriteString(`</p><nav class="tabs" aria-label="Vault">`)
	for _, t := range []struct{ path, label string }{{"vault", "Keys"}, {"vault/deleted", "Deleted keys"}, {"vault/access", "Access"}, {"vault/network", "Network"}} {
		cur := ""
		if t.path == current {
			cur = ` aria-current="page"`
		}
		b.WriteString(`<a href="` + template.HTMLEscapeString(Prefix+t.path+q) + `"` + cur + `>` + t.label + `</a>`)
	}
	b.WriteString(`</nav>`)
	return template.HTML(b.String())
}

func vaultPath(name string) string { return "/vaults/" + url.PathEscape(name) }

func keyPath(vault, key string) string { return vaultPath(vault) + "/keys/" + url.PathEscape(key) }

// vaultData loads vault name and starts a page's data; ok is false when it failed (the
// error page was written).
func (c *Console) vaultData(w http.ResponseWriter, r *http.Request, rq *request, name, tab string, prob map[string]string, done string) (wire.Vault, map[string]any, bool) {
	var v wire.Vault
	if err := rq.api.mgmt(http.MethodGet, vaultPath(name), nil, nil, &v); err != nil {
		c.fail(w, r, rq, err)
		return v, nil, false
	}
	return v, map[string]any{"Title": "Vault " + v.Name, "Vault": v, "Tabs": vaultTabs(v.Name, tab), "Problem": prob, "Done": done}, true
}

func (c *Console) vaults(w http.ResponseWriter, r *http.Request, rq *request) {
	c.vaultsPage(w, r, rq, http.StatusOK, nil, doneMessage(r.URL.Query(), "deleted", "Deleted vault %s."), nil)
}

func (c *Console) vaultsPage(w http.ResponseWriter, r *http.Request, rq *request, status int, prob map[string]string, done string, form url.Values) {
	var vaults wire.List[wire.Vault]
	if err := rq.api.mgmt(http.MethodGet, "/vaults", nil, nil, &vaults); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	rows, tv := table(r, "vaults", vaults.Value, col("name", byString(func(v wire.Vault) string { return v.Name })),
		col("url", byString(func(v wire.Vault) string { return v.URL })),
		col("model", byString(func(v wire.Vault) string { return strconv.FormatBool(v.EnableRbacAuthorization) })),
		col("retention", byNumber(func(v wire.Vault) int { return v.SoftDeleteRetentionDays })),
		col("purge", byString(func(v wire.Vault) string { return strconv.FormatBool(v.EnablePurgeProtection) })),
		col("network", byString(func(v wire.Vault) string { return v.NetworkRules.DefaultAction })))
	if form == nil {
		form = url.Values{"retention": {"90"}, "default-action": {"Allow"}, "bypass": {"CofferServices"}}
	}
	c.render(w, r, status, "vaults", rq.s, map[string]any{"Title": "Vaults", "Vaults": rows, "VaultsT": tv, "Problem": prob, "Done": done,
		"CanCreate": rq.api.allowed(access.VaultManage, access.ScopeRoot), "Need": needVaultCreate, "Form": formView(form)})
}

// doneMessage is the notice after a change that redirected here: for the first of the
// parameter/message pairs whose parameter the address carries, the message with its value
// in place of %s. The page escapes it.
func doneMessage(q url.Values, pairs ...string) string {
	for i := 0; i+1 < len(pairs); i += 2 {
		if v := q.Get(pairs[i]); v != "" {
			return strings.Replace(pairs[i+1], "%s", v, 1)
		}
	}
	return ""
}

// formView is a submitted form's first values, to fill the form again after a refusal.
func formView(f url.Values) map[string]string {
	out := map[string]string{}
	for k, v := range f {
		if len(v) > 0 && k != "csrf" {
			out[k] = v[0]
		}
	}
	return out
}

// ipRules splits a text area's addresses or ranges (one a line, or comma-separated).
func ipRules(s string) []string {
	out := []string{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' || r == ' ' || r == '\t' }) {
		out = append(out, f)
	}
	return out
}

// createVault creates a vault as `coffer vault create` does: the same body, the API checks it.
func (c *Console) createVault(w http.ResponseWriter, r *http.Request, rq *request) {
	f := r.PostForm
	days, err := strconv.Atoi(strings.TrimSpace(f.Get("retention")))
	if err != nil {
		c.vaultsPage(w, r, rq, http.StatusBadRequest, map[string]string{"Message": "The soft-delete retention must be a number of days.", "Next": "Enter 7 to 90."}, "", f)
		return
	}
	v := wire.Vault{Name: strings.TrimSpace(f.Get("name")), EnableRbacAuthorization: f.Get("model") == "rbac", SoftDeleteRetentionDays: days,
		EnablePurgeProtection: f.Get("purge-protection") == "on",
		NetworkRules:          wire.NetworkRules{DefaultAction: f.Get("default-action"), IPRules: ipRules(f.Get("ip-rules")), Bypass: f.Get("bypass")}}
	var out wire.Vault
	if err := rq.api.mgmt(http.MethodPost, "/vaults", nil, v, &out); err != nil {
		c.vaultsPage(w, r, rq, statusOf(err), problem(err), "", f)
		return
	}
	http.Redirect(w, r, Prefix+"vault?"+url.Values{"name": {out.Name}, "created": {"1"}}.Encode(), http.StatusSeeOther)
}

func (c *Console) vault(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	c.vaultPage(w, r, rq, q.Get("name"), http.StatusOK, nil, doneMessage(q, "created", "Created the vault. Give identities access (Access) before they use its keys.",
		"saved", "Saved the vault's soft-delete settings."))
}

func (c *Console) vaultPage(w http.ResponseWriter, r *http.Request, rq *request, name string, status int, prob map[string]string, done string) {
	v, data, ok := c.vaultData(w, r, rq, name, "vault", prob, done)
	if !ok {
		return
	}
	vs := access.VaultScope(v.Name)
	var keys wire.KeyList
	if err := rq.api.mgmt(http.MethodGet, vaultPath(v.Name)+"/keys", url.Values{"maxresults": {"25"}, "skiptoken": {r.URL.Query().Get("skiptoken")}}, nil, &keys); err != nil {
		data["KeysProblem"] = problem(err)
	} else {
		data["Keys"], data["KeysT"] = table(r, "keys", keys.Value, col("name", byString(func(k wire.Key) string { return k.Name })),
			col("type", byString(func(k wire.Key) string { return k.JWK.Kty })),
			col("enabled", byString(func(k wire.Key) string { return strconv.FormatBool(k.Attributes.Enabled) })),
			col("expires", byTime(func(k wire.Key) time.Time { return deref(k.Attributes.Expires) })),
			col("updated", byTime(func(k wire.Key) time.Time { return k.Attributes.Updated })))
		data["SkipToken"] = keys.SkipToken
	}
	data["CanCreateKey"] = rq.api.allowedKey(v, access.KeyCreate, vs)
	data["NeedCreateKey"] = keyNeed(v, "create")
	data["CanManage"] = rq.api.allowed(access.VaultManage, vs)
	data["Need"] = needVaultManage
	c.render(w, r, status, "vault", rq.s, data)
}

// setProperties changes the soft-delete retention or turns purge protection on, as
// `coffer vault update --retention-days --purge-protection`; the vault refuses what purge
// protection forbids (turning it off, changing the retention once it is on).
func (c *Console) setProperties(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PostFormValue("vault")
	var u wire.VaultUpdate
	if s := strings.TrimSpace(r.PostFormValue("retention")); s != "" {
		days, err := strconv.Atoi(s)
		if err != nil {
			c.vaultPage(w, r, rq, name, http.StatusBadRequest, map[string]string{"Message": "The soft-delete retention must be a number of days.", "Next": "Enter 7 to 90."}, "")
			return
		}
		u.SoftDeleteRetentionDays = &days
	}
	if r.PostFormValue("purge-protection") == "on" {
		on := true
		u.EnablePurgeProtection = &on
	}
	if err := rq.api.mgmt(http.MethodPatch, vaultPath(name), nil, u, nil); err != nil {
		c.vaultPage(w, r, rq, name, statusOf(err), problem(err), "")
		return
	}
	http.Redirect(w, r, Prefix+"vault?"+url.Values{"name": {name}, "saved": {"1"}}.Encode(), http.StatusSeeOther)
}

// keyTags reads "k=v, k2=v2" into tags (nil when empty).
func keyTags(s string) (map[string]string, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, true
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, false
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, true
}

func (c *Console) createKey(w http.ResponseWriter, r *http.Request, rq *request) {
	vaultName, name, kty := r.PostFormValue("vault"), strings.TrimSpace(r.PostFormValue("name")), r.PostFormValue("kty")
	req := wire.CreateKeyRequest{Kty: kty}
	if s := r.PostFormValue("size"); s != "" && strings.HasPrefix(kty, "RSA") {
		req.Size, _ = strconv.Atoi(s)
	}
	if strings.HasPrefix(kty, "EC") {
		req.Curve = r.PostFormValue("curve")
	}
	tags, ok := keyTags(r.PostFormValue("tags"))
	if !ok {
		c.vaultPage(w, r, rq, vaultName, http.StatusBadRequest, map[string]string{"Message": "The tags could not be read.", "Next": "Write them as name=value, separated by commas."}, "")
		return
	}
	req.Tags = tags
	var k wire.Key
	if err := rq.api.mgmt(http.MethodPost, keyPath(vaultName, name)+"/create", nil, req, &k); err != nil {
		c.vaultPage(w, r, rq, vaultName, statusOf(err), problem(err), "")
		return
	}
	http.Redirect(w, r, Prefix+"key?"+url.Values{"vault": {vaultName}, "name": {k.Name}, "created": {k.Version}}.Encode(), http.StatusSeeOther)
}

// confirmData is the typed confirmation page (vault_confirm.html).
type confirmData struct {
	Action, Word, Button, Cancel string
	Fields                       map[string]string
	Facts                        []string
	Allowed                      bool
	Reason                       string
}

func (c *Console) confirm(w http.ResponseWriter, r *http.Request, rq *request, status int, title string, cd confirmData, prob map[string]string) {
	c.render(w, r, status, "vault_confirm", rq.s, map[string]any{"Title": title, "C": cd, "Problem": prob})
}

// confirmation is an irreversible change behind a page that says what it does and asks
// for the name of what it deletes: a vault, or a key of a vault.
type confirmation struct {
	vaultField, itemField string // the request's fields naming the vault and the key ("": none)
	load                  func(rq *request, vault, item string) (string, confirmData, error)
	path                  func(vault, item string) string // what the API deletes
	done                  func(vault, item string) string // where to go after
}

func (cf confirmation) names(get func(string) string) (vault, item, word string) {
	vault = get(cf.vaultField)
	word = vault
	if cf.itemField != "" {
		item = get(cf.itemField)
		word = item
	}
	return vault, item, word
}

// showConfirmation is the page asking to confirm cf.
func (c *Console) showConfirmation(cf confirmation) page {
	return func(w http.ResponseWriter, r *http.Request, rq *request) {
		vault, item, _ := cf.names(r.URL.Query().Get)
		title, cd, err := cf.load(rq, vault, item)
		if err != nil {
			c.fail(w, r, rq, err)
			return
		}
		c.confirm(w, r, rq, http.StatusOK, title, cd, nil)
	}
}

// confirmed makes the change once the typed name matches; the page is loaded again only to
// show a refusal, so the change itself needs nothing but what the API asks.
func (c *Console) confirmed(cf confirmation) page {
	return func(w http.ResponseWriter, r *http.Request, rq *request) {
		vault, item, word := cf.names(r.PostFormValue)
		again := func(status int, prob map[string]string) {
			title, cd, err := cf.load(rq, vault, item)
			if err != nil {
				c.render(w, r, status, "error", rq.s, map[string]any{"Title": "Not done", "Message": prob["Message"], "Next": prob["Next"]})
				return
			}
			c.confirm(w, r, rq, status, title, cd, prob)
		}
		if word == "" || r.PostFormValue("confirm") != word {
			again(http.StatusBadRequest, map[string]string{"Message": "Nothing was changed: the name you typed does not match.", "Next": "Type " + word + " exactly to confirm."})
			return
		}
		if err := rq.api.mgmt(http.MethodDelete, cf.path(vault, item), nil, nil, nil); err != nil {
			again(statusOf(err), problem(err))
			return
		}
		http.Redirect(w, r, cf.done(vault, item), http.StatusSeeOther)
	}
}

// vaultDeleteConfirm says what deleting vault v does, as the vault service has it: refused
// while it holds keys, deleted keys included, which purge protection keeps until their date.
func (c *Console) vaultDeleteConfirm(rq *request, name, _ string) (string, confirmData, error) {
	var v wire.Vault
	if err := rq.api.mgmt(http.MethodGet, vaultPath(name), nil, nil, &v); err != nil {
		return "", confirmData{}, err
	}
	cd := confirmData{Action: Prefix + "vault/delete", Word: v.Name, Button: "Delete the vault", Cancel: Prefix + "vault?name=" + url.QueryEscape(v.Name),
		Fields: map[string]string{"name": v.Name}, Allowed: rq.api.allowed(access.VaultManage, access.VaultScope(v.Name)), Reason: needVaultManage}
	cd.Facts = append(cd.Facts, "Deleting vault "+v.Name+" removes it, its URL ("+v.URL+"), its access policies and network rules. It cannot be undone.",
		"The server refuses while the vault holds keys, deleted keys included: delete each key, then purge it from Deleted keys.")
	var keys wire.KeyList
	if rq.api.mgmt(http.MethodGet, vaultPath(v.Name)+"/keys", url.Values{"maxresults": {"25"}}, nil, &keys) == nil && len(keys.Value) > 0 {
		more := ""
		if keys.SkipToken != "" {
			more = " or more"
		}
		cd.Facts = append(cd.Facts, "It holds "+strconv.Itoa(len(keys.Value))+more+" keys now.")
	}
	var del wire.DeletedKeyList
	if rq.api.mgmt(http.MethodGet, vaultPath(v.Name)+"/deletedkeys", nil, nil, &del) == nil && len(del.Value) > 0 {
		last := slices.MaxFunc(del.Value, func(a, b wire.DeletedKey) int { return a.ScheduledPurgeDate.Compare(b.ScheduledPurgeDate) })
		s := "It holds " + strconv.Itoa(len(del.Value)) + " deleted keys, to purge first"
		if v.EnablePurgeProtection {
			s += "; purge protection is on, so the last of them can be purged only after " + last.ScheduledPurgeDate.UTC().Format("2006-01-02 15:04 UTC")
		}
		cd.Facts = append(cd.Facts, s+".")
	}
	return "Delete vault " + v.Name, cd, nil
}

// deletedRow is a deleted key with what the page offers for it.
type deletedRow struct {
	wire.DeletedKey
	CanPurge bool
	Why      string
}

func (c *Console) deletedKeys(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	c.deletedPage(w, r, rq, q.Get("name"), http.StatusOK, nil, doneMessage(q,
		"deleted", "Deleted key %s: it is listed here until it is purged, and can be recovered until then.",
		"purged", "Purged key %s: it is gone for good."))
}

func (c *Console) deletedPage(w http.ResponseWriter, r *http.Request, rq *request, name string, status int, prob map[string]string, done string) {
	v, data, ok := c.vaultData(w, r, rq, name, "vault/deleted", prob, done)
	if !ok {
		return
	}
	var del wire.DeletedKeyList
	if err := rq.api.mgmt(http.MethodGet, vaultPath(v.Name)+"/deletedkeys", url.Values{"maxresults": {"25"}, "skiptoken": {r.URL.Query().Get("skiptoken")}}, nil, &del); err != nil {
		data["DeletedProblem"] = problem(err)
	} else {
		now := c.cfg.Now()
		canPurge := rq.api.allowedKey(v, access.KeyPurge, access.VaultScope(v.Name))
		rows := make([]deletedRow, 0, len(del.Value))
		for _, k := range del.Value {
			row := deletedRow{DeletedKey: k, CanPurge: canPurge, Why: keyNeed(v, "purge")}
			if v.EnablePurgeProtection && now.Before(k.ScheduledPurgeDate) {
				row.CanPurge, row.Why = false, strings.Replace(purgeProtectedFmt, "%s", k.ScheduledPurgeDate.UTC().Format("2006-01-02 15:04 UTC"), 1)
			}
			rows = append(rows, row)
		}
		data["Deleted"], data["DeletedT"] = table(r, "deleted", rows, col("name", byString(func(k deletedRow) string { return k.Name })),
			col("deleted", byTime(func(k deletedRow) time.Time { return k.DeletedDate })),
			col("purge", byTime(func(k deletedRow) time.Time { return k.ScheduledPurgeDate })))
		data["SkipToken"] = del.SkipToken
	}
	data["CanRecover"] = rq.api.allowedKey(v, access.KeyRecover, access.VaultScope(v.Name))
	data["NeedRecover"] = keyNeed(v, "recover")
	c.render(w, r, status, "vault_deleted", rq.s, data)
}

func (c *Console) recoverKey(w http.ResponseWriter, r *http.Request, rq *request) {
	vaultName, name := r.PostFormValue("vault"), r.PostFormValue("key")
	var k wire.Key
	if err := rq.api.mgmt(http.MethodPost, vaultPath(vaultName)+"/deletedkeys/"+url.PathEscape(name)+"/recover", nil, nil, &k); err != nil {
		c.deletedPage(w, r, rq, vaultName, statusOf(err), problem(err), "")
		return
	}
	http.Redirect(w, r, Prefix+"key?"+url.Values{"vault": {vaultName}, "name": {k.Name}, "recovered": {"1"}}.Encode(), http.StatusSeeOther)
}

func (c *Console) purgeConfirm(rq *request, vault, name string) (string, confirmData, error) {
	var v wire.Vault
	var k wire.DeletedKey
	err := rq.api.mgmt(http.MethodGet, vaultPath(vault), nil, nil, &v)
	if err == nil {
		err = rq.api.mgmt(http.MethodGet, vaultPath(v.Name)+"/deletedkeys/"+url.PathEscape(name), nil, nil, &k)
	}
	if err != nil {
		return "", confirmData{}, err
	}
	cd := confirmData{Action: Prefix + "vault/deleted/purge", Word: k.Name, Button: "Purge for good", Cancel: Prefix + "vault/deleted?name=" + url.QueryEscape(v.Name),
		Fields:  map[string]string{"vault": v.Name, "key": k.Name},
		Allowed: rq.api.allowedKey(v, access.KeyPurge, access.KeyScope(v.Name, k.Name)), Reason: keyNeed(v, "purge")}
	cd.Facts = []string{"Purging destroys deleted key " + k.Name + " of vault " + v.Name + " and every version of it, now, instead of on " +
		k.ScheduledPurgeDate.UTC().Format("2006-01-02 15:04 UTC") + ". Whatever it encrypted or wrapped can no longer be decrypted or unwrapped. It cannot be undone."}
	if v.EnablePurgeProtection && rq.api.c.cfg.Now().Before(k.ScheduledPurgeDate) {
		cd.Allowed, cd.Reason = false, strings.Replace(purgeProtectedFmt, "%s", k.ScheduledPurgeDate.UTC().Format("2006-01-02 15:04 UTC"), 1)
	}
	return "Purge key " + k.Name, cd, nil
}

// permissionRow is an access policy with the identity's name, when the user may read it.
type permissionRow struct {
	wire.AccessPolicy
	Who string
}

// vaultAssignmentRow is a role assignment that applies in the vault; Inherited ones are made at
// a scope above it and removed there.
type vaultAssignmentRow struct {
	wire.RoleAssignment
	Inherited bool
}

func (c *Console) vaultAccess(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	c.accessTab(w, r, rq, q.Get("name"), http.StatusOK, nil, doneMessage(q, "set", "Access policy of %s saved.", "removed", "Removed %s.",
		"assigned", "Assigned %s.", "model", "The vault now uses %s."))
}

// names maps the object ids of users, service principals and managed identities the user
// may list to their names (for the access-policy table; unreadable lists are skipped).
func (a *apiClient) names() map[string]string {
	out := map[string]string{}
	var ids wire.List[wire.Identity]
	for _, p := range []string{"/users", "/servicePrincipals"} {
		ids.Value = nil
		if a.mgmt(http.MethodGet, p, nil, nil, &ids) == nil {
			for _, i := range ids.Value {
				out[i.ID] = i.Name
			}
		}
	}
	var mis wire.List[wire.ManagedIdentity]
	if a.mgmt(http.MethodGet, "/managedIdentities", nil, nil, &mis) == nil {
		for _, m := range mis.Value {
			out[m.ID] = m.Name
		}
	}
	return out
}

func (c *Console) accessTab(w http.ResponseWriter, r *http.Request, rq *request, name string, status int, prob map[string]string, done string) {
	v, data, ok := c.vaultData(w, r, rq, name, "vault/access", prob, done)
	if !ok {
		return
	}
	vs := access.VaultScope(v.Name)
	names := rq.api.names()
	if !v.EnableRbacAuthorization {
		var pols wire.List[wire.AccessPolicy]
		if err := rq.api.mgmt(http.MethodGet, vaultPath(v.Name)+"/access-policies", nil, nil, &pols); err != nil {
			data["PoliciesProblem"] = problem(err)
		} else {
			rows := make([]permissionRow, 0, len(pols.Value))
			for _, p := range pols.Value {
				rows = append(rows, permissionRow{AccessPolicy: p, Who: names[p.ObjectID]})
			}
			data["Policies"], data["PoliciesT"] = table(r, "policies", rows, col("who", byString(func(p permissionRow) string { return p.Who + p.ObjectID })),
				col("object", byString(func(p permissionRow) string { return p.ObjectID })),
				col("permissions", byNumber(func(p permissionRow) int { return len(p.KeyPermissions) })),
				col("updated", byTime(func(p permissionRow) time.Time { return p.UpdatedAt })))
		}
		data["Permissions"] = access.KeyPermissionNames()
	}
	var asgs wire.List[wire.RoleAssignment]
	if err := rq.api.mgmt(http.MethodGet, "/role-assignments", nil, nil, &asgs); err != nil {
		data["AssignmentsProblem"] = problem(err)
	} else {
		rows := []vaultAssignmentRow{}
		for _, a := range asgs.Value {
			sc := access.Scope(a.Scope)
			switch {
			case sc == vs || strings.HasPrefix(a.Scope, string(vs)+"/"):
				rows = append(rows, vaultAssignmentRow{RoleAssignment: a})
			case sc.Covers(vs):
				rows = append(rows, vaultAssignmentRow{RoleAssignment: a, Inherited: true})
			}
		}
		data["Assignments"], data["AssignmentsT"] = table(r, "assignments", rows, col("scope", byString(func(a vaultAssignmentRow) string { return a.Scope })),
			col("role", byString(func(a vaultAssignmentRow) string { return a.Role })),
			col("principal", byString(func(a vaultAssignmentRow) string { return a.PrincipalName + a.PrincipalID })),
			col("created", byTime(func(a vaultAssignmentRow) time.Time { return a.CreatedAt })))
	}
	var roles wire.List[wire.RoleDefinition]
	if rq.api.mgmt(http.MethodGet, "/role-definitions", nil, nil, &roles) == nil {
		data["Roles"] = roles.Value
	}
	data["CanManage"] = rq.api.allowed(access.VaultManage, vs)
	data["CanAssign"] = rq.api.allowed(access.AccessManage, vs)
	data["Need"], data["NeedAssign"] = needVaultManage, needAccessManage
	c.render(w, r, status, "vault_access", rq.s, data)
}

func accessRedirect(w http.ResponseWriter, r *http.Request, vault, k, v string) {
	http.Redirect(w, r, Prefix+"vault/access?"+url.Values{"name": {vault}, k: {v}}.Encode(), http.StatusSeeOther)
}

// setAccessModel switches between access policies and RBAC (PATCH enableRbacAuthorization).
func (c *Console) setAccessModel(w http.ResponseWriter, r *http.Request, rq *request) {
	name, rbac := r.PostFormValue("vault"), r.PostFormValue("rbac") == "true"
	if err := rq.api.mgmt(http.MethodPatch, vaultPath(name), nil, wire.VaultUpdate{EnableRbacAuthorization: &rbac}, nil); err != nil {
		c.accessTab(w, r, rq, name, statusOf(err), problem(err), "")
		return
	}
	model := "access policies"
	if rbac {
		model = "RBAC (role assignments)"
	}
	accessRedirect(w, r, name, "model", model)
}

// setPolicy sets (replaces) an identity's key permissions, as `coffer vault policy set`.
func (c *Console) setPolicy(w http.ResponseWriter, r *http.Request, rq *request) {
	name, id := r.PostFormValue("vault"), strings.TrimSpace(r.PostFormValue("object"))
	var perms []string
	for _, p := range access.KeyPermissionNames() {
		if r.PostFormValue("perm-"+p) == "on" {
			perms = append(perms, p)
		}
	}
	if r.PostFormValue("perm-all") == "on" {
		perms = []string{access.KeyPermissionsAllName}
	}
	if id == "" || len(perms) == 0 {
		c.accessTab(w, r, rq, name, http.StatusBadRequest, map[string]string{"Message": "The access policy was not saved: it needs an identity and at least one permission.",
			"Next": "Enter an object id, name or client id and tick the permissions it needs."}, "")
		return
	}
	var out wire.AccessPolicy
	if err := rq.api.mgmt(http.MethodPut, vaultPath(name)+"/access-policies/"+url.PathEscape(id), nil, wire.SetAccessPolicyRequest{KeyPermissions: perms}, &out); err != nil {
		c.accessTab(w, r, rq, name, statusOf(err), problem(err), "")
		return
	}
	accessRedirect(w, r, name, "set", out.ObjectID)
}

func (c *Console) deletePolicy(w http.ResponseWriter, r *http.Request, rq *request) {
	name, id := r.PostFormValue("vault"), r.PostFormValue("object")
	if err := rq.api.mgmt(http.MethodDelete, vaultPath(name)+"/access-policies/"+url.PathEscape(id), nil, nil, nil); err != nil {
		c.accessTab(w, r, rq, name, statusOf(err), problem(err), "")
		return
	}
	accessRedirect(w, r, name, "removed", "the access policy of "+id)
}

// assignVaultRole assigns a role at the vault or one of its keys, as `coffer role assign`; the
// scope is checked with the one scope parser the API uses.
func (c *Console) assignVaultRole(w http.ResponseWriter, r *http.Request, rq *request) {
	name, key := r.PostFormValue("vault"), strings.TrimSpace(r.PostFormValue("key"))
	raw := "/vaults/" + name
	if key != "" {
		raw += "/keys/" + key
	}
	scope, err := wire.ParseScope(raw)
	if err != nil {
		c.accessTab(w, r, rq, name, http.StatusBadRequest, map[string]string{"Message": sentence(err.Error()), "Next": "A key name is letters, digits and dashes; leave it empty for the whole vault."}, "")
		return
	}
	req := wire.CreateRoleAssignmentRequest{Role: r.PostFormValue("role"), Assignee: strings.TrimSpace(r.PostFormValue("assignee")), Scope: scope}
	var out wire.RoleAssignment
	if err := rq.api.mgmt(http.MethodPost, "/role-assignments", nil, req, &out); err != nil {
		c.accessTab(w, r, rq, name, statusOf(err), problem(err), "")
		return
	}
	who := out.PrincipalName
	if who == "" {
		who = out.PrincipalID
	}
	accessRedirect(w, r, name, "assigned", out.Role+" to "+who+" at "+out.Scope)
}

func (c *Console) unassignVaultRole(w http.ResponseWriter, r *http.Request, rq *request) {
	name, id := r.PostFormValue("vault"), r.PostFormValue("id")
	var a wire.RoleAssignment
	err := rq.api.mgmt(http.MethodGet, "/role-assignments/"+url.PathEscape(id), nil, nil, &a)
	if err == nil {
		err = rq.api.mgmt(http.MethodDelete, "/role-assignments/"+url.PathEscape(id), nil, nil, nil)
	}
	if err != nil {
		c.accessTab(w, r, rq, name, statusOf(err), problem(err), "")
		return
	}
	accessRedirect(w, r, name, "removed", "the role "+a.Role+" of "+a.PrincipalName+" at "+a.Scope)
}

func (c *Console) vaultNetwork(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	c.networkPage(w, r, rq, q.Get("name"), http.StatusOK, nil, doneMessage(q, "saved", "Network rules saved."), nil)
}

func (c *Console) networkPage(w http.ResponseWriter, r *http.Request, rq *request, name string, status int, prob map[string]string, done string, rules *wire.NetworkRules) {
	v, data, ok := c.vaultData(w, r, rq, name, "vault/network", prob, done)
	if !ok {
		return
	}
	if rules == nil {
		rules = &v.NetworkRules
	}
	data["Rules"], data["IPRules"] = rules, strings.Join(rules.IPRules, "\n")
	addr := r.RemoteAddr
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		addr = strings.Trim(addr[:i], "[]")
	}
	data["Addr"] = addr
	data["CanManage"], data["Need"] = rq.api.allowed(access.VaultManage, access.VaultScope(v.Name)), needVaultManage
	c.render(w, r, status, "vault_network", rq.s, data)
}

// setNetwork replaces the vault's network rules (PATCH networkAcls), as `coffer vault update`.
func (c *Console) setNetwork(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PostFormValue("vault")
	rules := wire.NetworkRules{DefaultAction: r.PostFormValue("default-action"), IPRules: ipRules(r.PostFormValue("ip-rules")), Bypass: r.PostFormValue("bypass")}
	if err := rq.api.mgmt(http.MethodPatch, vaultPath(name), nil, wire.VaultUpdate{NetworkRules: &rules}, nil); err != nil {
		c.networkPage(w, r, rq, name, statusOf(err), problem(err), "", &rules)
		return
	}
	http.Redirect(w, r, Prefix+"vault/network?"+url.Values{"name": {name}, "saved": {"1"}}.Encode(), http.StatusSeeOther)
}

func (c *Console) key(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	c.keyPage(w, r, rq, q.Get("vault"), q.Get("name"), http.StatusOK, nil, doneMessage(q, "created", "Created version %s.",
		"rotated", "Rotated: the newest version is %s.", "recovered", "Recovered: the key and all its versions are back.", "saved", "Saved the %s."))
}

// policyForm is a rotation policy as the form's fields.
type policyForm struct{ RotateAfterCreate, RotateBeforeExpiry, NotifyBeforeExpiry, Expiry string }

func policyFields(p wire.RotationPolicy) policyForm {
	f := policyForm{Expiry: p.Attributes.ExpiryTime}
	for _, la := range p.LifetimeActions {
		switch strings.ToLower(la.Action.Type) {
		case "rotate":
			f.RotateAfterCreate, f.RotateBeforeExpiry = la.Trigger.TimeAfterCreate, la.Trigger.TimeBeforeExpiry
		case "notify":
			f.NotifyBeforeExpiry = la.Trigger.TimeBeforeExpiry
		}
	}
	return f
}

func (c *Console) keyPage(w http.ResponseWriter, r *http.Request, rq *request, vaultName, name string, status int, prob map[string]string, done string) {
	var v wire.Vault
	if err := rq.api.mgmt(http.MethodGet, vaultPath(vaultName), nil, nil, &v); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	kp := keyPath(v.Name, name)
	var k wire.Key
	if err := rq.api.mgmt(http.MethodGet, kp, nil, nil, &k); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	data := map[string]any{"Title": "Key " + k.Name, "VaultName": v.Name, "Vault": v, "Key": k, "Problem": prob, "Done": done}
	var versions wire.KeyList
	if err := rq.api.mgmt(http.MethodGet, kp+"/versions", nil, nil, &versions); err != nil {
		data["VersionsProblem"] = problem(err)
	} else {
		data["Versions"], data["VersionsT"] = table(r, "versions", versions.Value,
			col("created", byTime(func(k wire.Key) time.Time { return k.Attributes.Created })),
			col("version", byString(func(k wire.Key) string { return k.Version })),
			col("enabled", byString(func(k wire.Key) string { return strconv.FormatBool(k.Attributes.Enabled) })),
			col("nbf", byTime(func(k wire.Key) time.Time { return deref(k.Attributes.NotBefore) })),
			col("expires", byTime(func(k wire.Key) time.Time { return deref(k.Attributes.Expires) })))
	}
	var pol wire.RotationPolicy
	if err := rq.api.mgmt(http.MethodGet, kp+"/rotationpolicy", nil, nil, &pol); err == nil {
		data["Policy"] = pol
		data["PolicyForm"] = policyFields(pol)
	} else {
		data["PolicyProblem"] = problem(err)
		data["PolicyForm"] = policyForm{}
	}
	ks := access.KeyScope(v.Name, k.Name)
	for _, p := range []struct {
		key  string
		act  access.Action
		perm string
	}{{"Rotate", access.KeyRotate, "rotate"}, {"Update", access.KeyUpdate, "update"}, {"SetPolicy", access.KeySetRotationPolicy, "setrotationpolicy"}, {"Delete", access.KeyDelete, "delete"}} {
		data["Can"+p.key] = rq.api.allowedKey(v, p.act, ks)
		data["Need"+p.key] = keyNeed(v, p.perm)
	}
	c.render(w, r, status, "key", rq.s, data)
}

func keyRedirect(w http.ResponseWriter, r *http.Request, vault, name, k, v string) {
	http.Redirect(w, r, Prefix+"key?"+url.Values{"vault": {vault}, "name": {name}, k: {v}}.Encode(), http.StatusSeeOther)
}

func (c *Console) rotateKey(w http.ResponseWriter, r *http.Request, rq *request) {
	vaultName, name := r.PostFormValue("vault"), r.PostFormValue("name")
	var k wire.Key
	if err := rq.api.mgmt(http.MethodPost, keyPath(vaultName, name)+"/rotate", nil, nil, &k); err != nil {
		c.keyPage(w, r, rq, vaultName, name, statusOf(err), problem(err), "")
		return
	}
	keyRedirect(w, r, vaultName, name, "rotated", k.Version)
}

func (c *Console) setKeyEnabled(w http.ResponseWriter, r *http.Request, rq *request) {
	vaultName, name, version := r.PostFormValue("vault"), r.PostFormValue("name"), r.PostFormValue("version")
	enabled := r.PostFormValue("enabled") == "true"
	q := url.Values{}
	if version != "" {
		q.Set("version", version)
	}
	if err := rq.api.mgmt(http.MethodPatch, keyPath(vaultName, name), q, wire.UpdateKeyRequest{Enabled: &enabled}, nil); err != nil {
		c.keyPage(w, r, rq, vaultName, name, statusOf(err), problem(err), "")
		return
	}
	word := "disabled"
	if enabled {
		word = "enabled"
	}
	c.keyPage(w, r, rq, vaultName, name, http.StatusOK, nil, "Version "+version+" "+word+".")
}

// formTime reads a date-time field in UTC (the browser's datetime-local, or RFC 3339); clear
// asks to remove the value (the API's zero time). nil: leave it as it is.
func formTime(v string, clear bool) (*time.Time, bool) {
	if clear {
		return &time.Time{}, true
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, true
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return &t, true
		}
	}
	return nil, false
}

// setKeyAttributes sets a version's expiry and activation times, as `coffer vault key update
// --expires --not-before`.
func (c *Console) setKeyAttributes(w http.ResponseWriter, r *http.Request, rq *request) {
	vaultName, name, version := r.PostFormValue("vault"), r.PostFormValue("name"), r.PostFormValue("version")
	exp, ok1 := formTime(r.PostFormValue("expires"), r.PostFormValue("clear-expires") == "on")
	nbf, ok2 := formTime(r.PostFormValue("nbf"), r.PostFormValue("clear-nbf") == "on")
	if !ok1 || !ok2 {
		c.keyPage(w, r, rq, vaultName, name, http.StatusBadRequest, map[string]string{"Message": "A date could not be read.", "Next": "Use the date picker, or write 2027-01-02T15:04 (UTC)."}, "")
		return
	}
	if exp == nil && nbf == nil {
		c.keyPage(w, r, rq, vaultName, name, http.StatusBadRequest, map[string]string{"Message": "Nothing to change.", "Next": "Set an expiry or activation date, or tick a box to remove one."}, "")
		return
	}
	q := url.Values{}
	if version != "" {
		q.Set("version", version)
	}
	if err := rq.api.mgmt(http.MethodPatch, keyPath(vaultName, name), q, wire.UpdateKeyRequest{Expires: exp, NotBefore: nbf}, nil); err != nil {
		c.keyPage(w, r, rq, vaultName, name, statusOf(err), problem(err), "")
		return
	}
	keyRedirect(w, r, vaultName, name, "saved", "dates")
}

// setRotationPolicy replaces the key's rotation policy, built as `coffer vault key
// rotation-policy set` builds it; the vault checks the durations.
func (c *Console) setRotationPolicy(w http.ResponseWriter, r *http.Request, rq *request) {
	vaultName, name := r.PostFormValue("vault"), r.PostFormValue("name")
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	p := wire.RotationPolicy{LifetimeActions: []wire.LifetimeAction{}}
	p.Attributes.ExpiryTime = f("expiry")
	if after, before := f("rotate-after-create"), f("rotate-before-expiry"); after != "" || before != "" {
		var la wire.LifetimeAction
		la.Action.Type = "Rotate"
		la.Trigger.TimeAfterCreate, la.Trigger.TimeBeforeExpiry = after, before
		p.LifetimeActions = append(p.LifetimeActions, la)
	}
	if n := f("notify-before-expiry"); n != "" {
		var la wire.LifetimeAction
		la.Action.Type = "Notify"
		la.Trigger.TimeBeforeExpiry = n
		p.LifetimeActions = append(p.LifetimeActions, la)
	}
	if err := rq.api.mgmt(http.MethodPut, keyPath(vaultName, name)+"/rotationpolicy", nil, p, nil); err != nil {
		c.keyPage(w, r, rq, vaultName, name, statusOf(err), problem(err), "")
		return
	}
	keyRedirect(w, r, vaultName, name, "saved", "rotation policy")
}

func (c *Console) keyDeleteConfirm(rq *request, vault, name string) (string, confirmData, error) {
	var v wire.Vault
	var k wire.Key
	err := rq.api.mgmt(http.MethodGet, vaultPath(vault), nil, nil, &v)
	if err == nil {
		err = rq.api.mgmt(http.MethodGet, keyPath(v.Name, name), nil, nil, &k)
	}
	if err != nil {
		return "", confirmData{}, err
	}
	cd := confirmData{Action: Prefix + "key/delete", Word: k.Name, Button: "Delete the key", Cancel: Prefix + "key?" + url.Values{"vault": {v.Name}, "name": {k.Name}}.Encode(),
		Fields:  map[string]string{"vault": v.Name, "name": k.Name},
		Allowed: rq.api.allowedKey(v, access.KeyDelete, access.KeyScope(v.Name, k.Name)), Reason: keyNeed(v, "delete")}
	until := rq.api.c.cfg.Now().AddDate(0, 0, v.SoftDeleteRetentionDays).UTC().Format("2006-01-02")
	cd.Facts = []string{"Deleting key " + k.Name + " deletes every version of it: operations with it are refused from now on.",
		"It is a soft delete: the key stays in Deleted keys for " + strconv.Itoa(v.SoftDeleteRetentionDays) + " days (until about " + until + "), recoverable with every version until then, and is purged after that."}
	if v.EnablePurgeProtection {
		cd.Facts = append(cd.Facts, "Purge protection is on: nobody can purge it before that date.")
	} else {
		cd.Facts = append(cd.Facts, "Purge protection is off: someone with the purge permission can destroy it for good before that date.")
	}
	return "Delete key " + k.Name, cd, nil
}
