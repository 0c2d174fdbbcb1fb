package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

func (c *Console) encryption(w http.ResponseWriter, r *http.Request, rq *request) {
	c.encryptionPage(w, r, rq, http.StatusOK, nil, "")
}

func (c *Console) encryptionPage(w http.ResponseWriter, r *http.Request, rq *request, status int, prob map[string]string, done string) {
	data := map[string]any{"Title": "Encryption", "Problem": prob, "Done": done}
	var enc wire.EncryptionStatus
	if err := rq.api.mgmt(http.MethodGet, "/registry/encryption", nil, nil, &enc); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	data["Enc"] = enc
	var vaults wire.List[wire.Vault]
	if err := rq.api.mgmt(http.MethodGet, "/vaults", nil, nil, &vaults); err == nil {
		data["Vaults"] = vaults.Value
	}
	var mis wire.List[wire.ManagedIdentity]
	if err := rq.api.mgmt(http.MethodGet, "/managedIdentities", nil, nil, &mis); err == nil {
		data["Identities"] = mis.Value
	}
	c.render(w, r, status, "encryption", rq.s, data)
}

// changeKey turns on a customer-managed key (from the platform key) or moves to another
// key, version or identity; the API checks the identity's permissions on the key first.
func (c *Console) changeKey(w http.ResponseWriter, r *http.Request, rq *request) {
	vaultName, key, version, ident := r.PostFormValue("vault"), strings.TrimSpace(r.PostFormValue("key")), strings.TrimSpace(r.PostFormValue("version")), r.PostFormValue("identity")
	var v wire.Vault
	if err := rq.api.mgmt(http.MethodGet, "/vaults/"+url.PathEscape(vaultName), nil, nil, &v); err != nil {
		c.encryptionPage(w, r, rq, http.StatusBadRequest, problem(err), "")
		return
	}
	if key == "" {
		c.encryptionPage(w, r, rq, http.StatusBadRequest, map[string]string{"Message": "Choose a key.", "Next": "Type the name of an RSA key in the vault."}, "")
		return
	}
	kid := strings.TrimSuffix(v.URL, "/") + "/keys/" + url.PathEscape(key)
	if version != "" {
		kid += "/" + url.PathEscape(version)
	}
	var cur wire.EncryptionStatus
	if err := rq.api.mgmt(http.MethodGet, "/registry/encryption", nil, nil, &cur); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	route := "/registry/encryption/rotate-key"
	if cur.Status != "enabled" { // the platform key: move to a customer-managed one
		route = "/registry/encryption/enable"
	}
	if err := rq.api.mgmt(http.MethodPost, route, nil, wire.EncryptionKeyRequest{KeyEncryptionKey: kid, Identity: ident}, nil); err != nil {
		c.encryptionPage(w, r, rq, http.StatusConflict, problem(err), "")
		return
	}
	c.encryptionPage(w, r, rq, http.StatusOK, nil, "The registry's key is now "+kid+".")
}

func (c *Console) rotateNow(w http.ResponseWriter, r *http.Request, rq *request) {
	if err := rq.api.mgmt(http.MethodPost, "/registry/encryption/rotation", nil, nil, nil); err != nil {
		c.encryptionPage(w, r, rq, http.StatusConflict, problem(err), "")
		return
	}
	c.encryptionPage(w, r, rq, http.StatusOK, nil, "Rotation check done: the registry uses the key's newest version.")
}

func (c *Console) accessPage(w http.ResponseWriter, r *http.Request, rq *request) {
	c.accessView(w, r, rq, http.StatusOK, nil, nil)
}

func (c *Console) accessView(w http.ResponseWriter, r *http.Request, rq *request, status int, prob map[string]string, created *wire.CreateTokenResponse) {
	data := map[string]any{"Title": "Access", "Problem": prob, "Created": created}
	var users, sps wire.List[wire.Identity]
	var mis wire.List[wire.ManagedIdentity]
	var toks wire.List[wire.RepositoryToken]
	var asgs wire.List[wire.RoleAssignment]
	for _, l := range []struct {
		path, key string
		out       any
	}{
		{"/users", "Users", &users}, {"/servicePrincipals", "SPs", &sps}, {"/managedIdentities", "MIs", &mis},
		{"/tokens", "Tokens", &toks}, {"/role-assignments", "Assignments", &asgs},
	} {
		if err := rq.api.mgmt(http.MethodGet, l.path, nil, nil, l.out); err != nil {
			data[l.key+"Problem"] = problem(err)
		}
	}
	name := func(i wire.Identity) string { return i.Name }
	data["Users"], data["UsersT"] = table(r, "users", users.Value, col("name", byString(name)), col("id", byString(func(i wire.Identity) string { return i.ID })),
		col("created", byTime(func(i wire.Identity) time.Time { return i.CreatedAt })))
	data["SPs"], data["SPsT"] = table(r, "sps", sps.Value, col("name", byString(name)), col("client", byString(func(i wire.Identity) string { return i.ClientID })),
		col("secrets", byNumber(func(i wire.Identity) int { return len(i.Credentials) })))
	data["MIs"], data["MIsT"] = table(r, "mis", mis.Value, col("name", byString(func(i wire.ManagedIdentity) string { return i.Name })),
		col("kind", byString(func(i wire.ManagedIdentity) string { return i.Kind })), col("client", byString(func(i wire.ManagedIdentity) string { return i.ClientID })))
	data["Tokens"], data["TokensT"] = table(r, "tokens", toks.Value, col("name", byString(func(t wire.RepositoryToken) string { return t.Name })),
		col("created", byTime(func(t wire.RepositoryToken) time.Time { return t.CreatedAt })))
	data["Assignments"], data["AssignmentsT"] = table(r, "assignments", asgs.Value, col("scope", byString(func(a wire.RoleAssignment) string { return a.Scope })),
		col("role", byString(func(a wire.RoleAssignment) string { return a.Role })), col("principal", byString(func(a wire.RoleAssignment) string { return a.PrincipalName })),
		col("created", byTime(func(a wire.RoleAssignment) time.Time { return a.CreatedAt })))
	c.render(w, r, status, "access", rq.s, data)
}

// createToken creates a repository token; its password is shown on this answer only.
func (c *Console) createToken(w http.ResponseWriter, r *http.Request, rq *request) {
	var actions []string
	for _, a := range []string{"content/read", "content/write", "content/delete", "metadata/read", "metadata/write"} {
		if r.PostFormValue(a) == "on" {
			actions = append(actions, a)
		}
	}
	req := wire.CreateTokenRequest{Name: strings.TrimSpace(r.PostFormValue("name")),
		ScopeMap: []wire.ScopeMapEntry{{Repository: strings.TrimSpace(r.PostFormValue("repository")), Actions: actions}}}
	var out wire.CreateTokenResponse
	if err := rq.api.mgmt(http.MethodPost, "/tokens", nil, req, &out); err != nil {
		c.accessView(w, r, rq, http.StatusBadRequest, problem(err), nil)
		return
	}
	c.accessView(w, r, rq, http.StatusCreated, nil, &out)
}

// auditFilters are the audit trail's filters, passed through to the API.
var auditFilters = []string{"identity", "vault", "key", "operation", "result", "since", "until"}

func (c *Console) audit(w http.ResponseWriter, r *http.Request, rq *request) {
	c.auditPage(w, r, rq, nil)
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, rq *request, verify *wire.AuditVerifyResult) {
	in := r.URL.Query()
	q := url.Values{"limit": {strconv.Itoa(pageSize)}}
	filters := map[string]string{}
	for _, f := range auditFilters {
		v := strings.TrimSpace(in.Get(f))
		filters[f] = v // every key present: the template passes each on
		if v != "" {
			q.Set(f, v)
		}
	}
	if a := in.Get("after"); a != "" {
		q.Set("after", a)
	}
	data := map[string]any{"Title": "Audit", "F": filters, "Verify": verify}
	var recs wire.List[wire.AuditRecord]
	if err := rq.api.mgmt(http.MethodGet, "/audit", q, nil, &recs); err != nil {
		data["Problem"] = problem(err)
	} else {
		data["Records"] = recs.Value
		if len(recs.Value) == pageSize {
			next := url.Values{}
			for k, v := range filters {
				if v != "" {
					next.Set(k, v)
				}
			}
			next.Set("after", strconv.FormatInt(recs.Value[len(recs.Value)-1].Seq, 10))
			data["NextQuery"] = next.Encode()
		}
	}
	if d := in.Get("seq"); d != "" {
		for _, rec := range recs.Value {
			if strconv.FormatInt(rec.Seq, 10) == d {
				data["Detail"] = rec
			}
		}
	}
	c.render(w, r, http.StatusOK, "audit", rq.s, data)
}

func (c *Console) verifyAudit(w http.ResponseWriter, r *http.Request, rq *request) {
	var res wire.AuditVerifyResult
	if err := rq.api.mgmt(http.MethodGet, "/audit/verify", nil, nil, &res); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	c.auditPage(w, r, rq, &res)
}
