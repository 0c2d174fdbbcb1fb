package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// The KMS pages: Kubernetes clusters' KMS v2 keys (docs/kms.md), through the management
// API's /kms/clusters routes, as `coffer kms cluster …` and `coffer kms rotate-now
// --cluster` do. The server creates a PMK, and checks a CMK as the plugin's identity,
// before it saves anything; the page shows its refusal in words.

// kmsForm is a create or update form as sent.
type kmsForm struct {
	Name, KeyManagement, KeyID, Network, Identity, Infra string
}

func (f kmsForm) request() wire.KMSClusterRequest {
	return wire.KMSClusterRequest{Name: f.Name, KeyManagement: f.KeyManagement, KeyID: f.KeyID, KeyVaultNetworkAccess: f.Network,
		Identity: f.Identity, InfrastructureEncryption: f.Infra}
}

func kmsFormOf(r *http.Request) kmsForm {
	f := kmsForm{Name: strings.TrimSpace(r.PostFormValue("name")), KeyManagement: r.PostFormValue("keyManagement"), KeyID: strings.TrimSpace(r.PostFormValue("keyId")),
		Network: r.PostFormValue("network"), Identity: strings.TrimSpace(r.PostFormValue("identity")), Infra: r.PostFormValue("infrastructureEncryption")}
	if f.KeyManagement != wire.KMSCustomerManaged {
		f.KeyID = "" // a PMK is Coffer's own key: a key id typed before switching is not sent
	}
	return f
}

func (c *Console) kmsClusters(w http.ResponseWriter, r *http.Request, rq *request) {
	c.kmsListView(w, r, rq, http.StatusOK, nil, "", kmsForm{KeyManagement: wire.KMSPlatformManaged, Network: wire.KMSNetworkPublic})
}

func (c *Console) kmsListView(w http.ResponseWriter, r *http.Request, rq *request, status int, prob map[string]string, done string, form kmsForm) {
	var list wire.List[wire.KMSCluster]
	if err := rq.api.mgmt(http.MethodGet, "/kms/clusters", nil, nil, &list); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	if q := r.URL.Query().Get("deleted"); q != "" && done == "" {
		done = "Cluster " + q + " removed; its keys stay in their vaults."
	}
	data := map[string]any{"Title": "KMS clusters", "Problem": prob, "Done": done, "Form": form,
		"CanManage": rq.api.allowed(access.VaultManage, access.ScopeRoot)}
	data["Clusters"], data["ClustersT"] = table(r, "clusters", list.Value,
		col("name", byString(func(k wire.KMSCluster) string { return k.Name })),
		col("management", byString(func(k wire.KMSCluster) string { return k.KeyManagement })),
		col("key", byString(func(k wire.KMSCluster) string { return k.SecurityProfile.AzureKeyVaultKms.KeyID })),
		col("decrypt", byNumber(func(k wire.KMSCluster) int { return len(k.DecryptOnlyKeys) })),
		col("updated", byTime(func(k wire.KMSCluster) time.Time { return k.Updated })))
	c.identityChoices(rq, data)
	c.render(w, r, status, "kms", rq.s, data)
}

// identityChoices lists the service principals and managed identities a plugin may run as,
// for the identity field's suggestions (the field takes any name, object id or client id).
func (c *Console) identityChoices(rq *request, data map[string]any) {
	data["IdentityChoices"] = principalNames(rq, "/servicePrincipals")
}

// principalNames are the names of the principals the lists name (/users,
// /servicePrincipals) and of the managed identities, sorted, for a field's suggestions;
// a list the user may not read is left out.
func principalNames(rq *request, lists ...string) []string {
	var names []string
	for _, l := range lists {
		var ids wire.List[wire.Identity]
		if rq.api.mgmt(http.MethodGet, l, nil, nil, &ids) == nil {
			for _, i := range ids.Value {
				names = append(names, i.Name)
			}
		}
	}
	var mis wire.List[wire.ManagedIdentity]
	if rq.api.mgmt(http.MethodGet, "/managedIdentities", nil, nil, &mis) == nil {
		for _, m := range mis.Value {
			names = append(names, m.Name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func (c *Console) createKMSCluster(w http.ResponseWriter, r *http.Request, rq *request) {
	f := kmsFormOf(r)
	var out wire.KMSCluster
	if err := rq.api.mgmt(http.MethodPost, "/kms/clusters", nil, f.request(), &out); err != nil {
		c.kmsListView(w, r, rq, statusOf(err), problem(err), "", f)
		return
	}
	http.Redirect(w, r, Prefix+"kms/cluster?"+url.Values{"name": {out.Name}, "done": {"created"}}.Encode(), http.StatusSeeOther)
}

func (c *Console) kmsCluster(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	done := map[string]string{"created": "Cluster configured: the plugin picks up its settings at its next start or poll.",
		"updated": "Key changed: the plugin writes with it from its next poll (or at once with coffer kms rotate-now --plugin-health); the previous key stays decrypt-only. Rewrite the Secrets with coffer kms reencrypt.",
		"rotated": "A new version of the platform-managed key was made: the plugin uses it from its next poll, and the apiserver within a minute after."}[q.Get("done")]
	c.kmsClusterView(w, r, rq, q.Get("name"), http.StatusOK, nil, done, nil)
}

func (c *Console) kmsClusterView(w http.ResponseWriter, r *http.Request, rq *request, name string, status int, prob map[string]string, done string, form *kmsForm) {
	var k wire.KMSCluster
	if err := rq.api.mgmt(http.MethodGet, "/kms/clusters/"+url.PathEscape(name), nil, nil, &k); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	sp, _ := json.MarshalIndent(k.SecurityProfile, "", "  ")
	data := map[string]any{"Title": "Cluster " + k.Name, "Cluster": k, "SecurityProfileJSON": string(sp), "Problem": prob, "Done": done,
		"CanManage": rq.api.allowed(access.VaultManage, access.ScopeRoot)}
	data["DecryptOnly"], data["DecryptOnlyT"] = table(r, "decrypt", k.DecryptOnlyKeys,
		col("since", byTime(func(d wire.KMSDecryptKey) time.Time { return d.Since })),
		col("key", byString(func(d wire.KMSDecryptKey) string { return d.KeyID })),
		col("management", byString(func(d wire.KMSDecryptKey) string { return d.KeyManagement })))
	if form == nil {
		other := wire.KMSCustomerManaged
		if k.KeyManagement == wire.KMSCustomerManaged {
			other = wire.KMSPlatformManaged
		}
		form = &kmsForm{Name: k.Name, KeyManagement: other, Network: k.SecurityProfile.AzureKeyVaultKms.KeyVaultNetworkAccess}
	}
	data["Form"] = *form
	c.identityChoices(rq, data)
	c.render(w, r, status, "kmscluster", rq.s, data)
}

// updateKMSCluster changes a cluster's key after a confirmation page that says what
// changes: the first POST shows it, the second (confirm=yes) sends the change.
func (c *Console) updateKMSCluster(w http.ResponseWriter, r *http.Request, rq *request) {
	f := kmsFormOf(r)
	if r.PostFormValue("confirm") != "yes" {
		var k wire.KMSCluster
		if err := rq.api.mgmt(http.MethodGet, "/kms/clusters/"+url.PathEscape(f.Name), nil, nil, &k); err != nil {
			c.fail(w, r, rq, err)
			return
		}
		c.render(w, r, http.StatusOK, "kmsconfirm", rq.s, map[string]any{"Title": "Change the key of " + k.Name, "Cluster": k, "Form": f,
			"CanManage": rq.api.allowed(access.VaultManage, access.ScopeRoot)})
		return
	}
	var out wire.KMSCluster
	if err := rq.api.mgmt(http.MethodPatch, "/kms/clusters/"+url.PathEscape(f.Name), nil, f.request(), &out); err != nil {
		c.kmsClusterView(w, r, rq, f.Name, statusOf(err), problem(err), "", &f)
		return
	}
	http.Redirect(w, r, Prefix+"kms/cluster?"+url.Values{"name": {out.Name}, "done": {"updated"}}.Encode(), http.StatusSeeOther)
}

func (c *Console) rotateKMSCluster(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PostFormValue("name")
	if err := rq.api.mgmt(http.MethodPost, "/kms/clusters/"+url.PathEscape(name)+"/rotate", nil, nil, nil); err != nil {
		c.kmsClusterView(w, r, rq, name, statusOf(err), problem(err), "", nil)
		return
	}
	http.Redirect(w, r, Prefix+"kms/cluster?"+url.Values{"name": {name}, "done": {"rotated"}}.Encode(), http.StatusSeeOther)
}

// deleteKMSCluster removes a cluster's settings once its name is typed.
func (c *Console) deleteKMSCluster(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PostFormValue("name")
	if name == "" || strings.TrimSpace(r.PostFormValue("confirm")) != name {
		c.kmsClusterView(w, r, rq, name, http.StatusBadRequest, map[string]string{"Message": "The cluster was not removed: the name you typed does not match.",
			"Next": "Type " + name + " exactly to confirm."}, "", nil)
		return
	}
	if err := rq.api.mgmt(http.MethodDelete, "/kms/clusters/"+url.PathEscape(name), nil, nil, nil); err != nil {
		c.kmsClusterView(w, r, rq, name, statusOf(err), problem(err), "", nil)
		return
	}
	http.Redirect(w, r, Prefix+"kms?deleted="+url.QueryEscape(name), http.StatusSeeOther)
}
