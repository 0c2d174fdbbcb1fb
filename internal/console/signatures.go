package console

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// The signatures page: trust anchors and the signature policy (docs/signatures.md), read
// and changed through the management API's signature routes, as `coffer registry
// signature` does. The console validates nothing of its own: every anchor and every
// policy goes to the signature service, and its refusal is shown in words.

// maxAnchorUpload bounds an uploaded PEM file (the service accepts 64 KiB).
const maxAnchorUpload = 256 << 10

// signatureKinds are the kinds a rule may accept, in the order the page lists them.
var signatureKinds = []string{wire.SignatureNotation, wire.SignatureCosign, wire.SignatureCosignOCI, wire.SignatureCosignBundle}

// anchorForm is what the add-anchor form was sent with (shown again after a refusal).
type anchorForm struct {
	Name, Kind, StoreType, Source, PEM, KeyURL string
}

// ruleForm is a rule being edited or added: Orig is the scope of the rule it replaces.
type ruleForm struct {
	Orig, Scope, Mode     string
	Kinds, CosignKeys     map[string]bool
	Exempt                string
	Publishers, Platforms string
}

func ruleFormOf(r wire.SignatureRule) ruleForm {
	f := ruleForm{Orig: r.Scope, Scope: r.Scope, Mode: r.Mode, Kinds: map[string]bool{}, CosignKeys: map[string]bool{},
		Exempt: strings.Join(r.Exempt, "\n"), Publishers: r.Publishers, Platforms: r.Platforms}
	if r.RefusePublishers && f.Publishers == "" {
		f.Publishers = "refuse"
	}
	for _, k := range r.Kinds {
		f.Kinds[k] = true
	}
	for _, k := range r.CosignKeys {
		f.CosignKeys[k] = true
	}
	return f
}

// sigForms are the page's forms as sent, when the API refused one of them.
type sigForms struct {
	Anchor *anchorForm
	Rule   *ruleForm
	Doc    *string
}

// policyDoc is the editable part of the signature policy, as `policy show -o json` prints it.
type policyDoc struct {
	Repositories []wire.SignatureRule `json:"repositories"`
	Notation     json.RawMessage      `json:"notation,omitempty"`
}

func (c *Console) signatures(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	done := ""
	switch {
	case q.Get("added") != "":
		done = "Trust anchor " + q.Get("added") + " added."
	case q.Get("deleted") != "":
		done = "Trust anchor " + q.Get("deleted") + " deleted: images signed only under it no longer verify."
	case q.Get("saved") != "":
		done = "Signature policy saved (version " + q.Get("saved") + ")."
	}
	c.signaturesView(w, r, rq, http.StatusOK, nil, done, sigForms{})
}

func (c *Console) signaturesView(w http.ResponseWriter, r *http.Request, rq *request, status int, prob map[string]string, done string, forms sigForms) {
	var anchors wire.List[wire.SignatureAnchor]
	if err := rq.api.mgmt(http.MethodGet, "/registry/signatures/anchors", nil, nil, &anchors); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	var pol wire.SignaturePolicy
	if err := rq.api.mgmt(http.MethodGet, "/registry/signatures/policy", nil, nil, &pol); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	data := map[string]any{"Title": "Signatures", "Problem": prob, "Done": done, "Policy": pol, "Kinds": signatureKinds,
		"CanManage": rq.api.allowed(access.AccessManage, access.ScopeRegistry)}
	data["Anchors"], data["AnchorsT"] = table(r, "anchors", anchors.Value,
		col("name", byString(func(a wire.SignatureAnchor) string { return a.Name })),
		col("kind", byString(func(a wire.SignatureAnchor) string { return a.Kind })),
		col("created", byTime(func(a wire.SignatureAnchor) time.Time { return a.Created })))
	var cosign []string
	for _, a := range anchors.Value {
		if a.Kind == wire.AnchorCosign {
			cosign = append(cosign, a.Name)
		}
	}
	data["Rules"], data["RulesT"] = table(r, "rules", pol.Repositories,
		col("scope", byString(func(x wire.SignatureRule) string { return x.Scope })),
		col("mode", byString(func(x wire.SignatureRule) string { return x.Mode })))
	if len(pol.Notation) > 0 {
		data["Notation"] = pretty(pol.Notation)
	}

	af := anchorForm{Kind: wire.AnchorCosign, Source: "pem", StoreType: "ca"}
	if forms.Anchor != nil {
		af = *forms.Anchor
	}
	rf := ruleForm{Mode: wire.SignatureModeAudit}
	if forms.Rule != nil {
		rf = *forms.Rule
	} else if e := r.URL.Query().Get("edit"); e != "" {
		for _, x := range pol.Repositories {
			if x.Scope == e {
				rf = ruleFormOf(x)
			}
		}
	}
	doc, _ := json.MarshalIndent(policyDoc{Repositories: pol.Repositories, Notation: pol.Notation}, "", "  ")
	docText := string(doc)
	if forms.Doc != nil {
		docText = *forms.Doc
	}
	// A rule may name an anchor deleted since: it is offered (ticked) so that the user
	// sees it, and the service says what is wrong if it is kept.
	for k := range rf.CosignKeys {
		if !slices.Contains(cosign, k) {
			cosign = append(cosign, k)
		}
	}
	slices.Sort(cosign)
	data["CosignAnchors"] = cosign
	data["AnchorForm"], data["RuleForm"], data["Doc"] = af, rf, docText
	c.render(w, r, status, "signatures", rq.s, data)
}

// addAnchor adds a notation trust store or a cosign key: a PEM file (uploaded or pasted)
// or, for cosign, a key in one of this server's vaults (keyUrl).
func (c *Console) addAnchor(w http.ResponseWriter, r *http.Request, rq *request) {
	f := anchorForm{Name: strings.TrimSpace(r.PostFormValue("name")), Kind: r.PostFormValue("kind"), StoreType: r.PostFormValue("storeType"),
		Source: r.PostFormValue("source"), PEM: r.PostFormValue("pem"), KeyURL: strings.TrimSpace(r.PostFormValue("keyUrl"))}
	in := wire.SignatureAnchor{Name: f.Name, Kind: f.Kind}
	if f.Source == "vault" {
		in.KeyURL = f.KeyURL
	} else {
		material := f.PEM
		if file, _, err := r.FormFile("pemfile"); err == nil {
			b, err := io.ReadAll(io.LimitReader(file, maxAnchorUpload))
			file.Close()
			if err == nil && len(b) > 0 {
				material = string(b)
			}
		}
		if f.Kind == wire.AnchorNotation {
			in.Certificates, in.StoreType = material, f.StoreType
		} else {
			in.PublicKey = material
		}
	}
	var out wire.SignatureAnchor
	if err := rq.api.mgmt(http.MethodPost, "/registry/signatures/anchors", nil, in, &out); err != nil {
		c.signaturesView(w, r, rq, statusOf(err), problem(err), "", sigForms{Anchor: &f})
		return
	}
	http.Redirect(w, r, Prefix+"signatures?added="+url.QueryEscape(out.Name), http.StatusSeeOther)
}

func (c *Console) refreshAnchor(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PostFormValue("name")
	var out wire.SignatureAnchorRefresh
	if err := rq.api.mgmt(http.MethodPost, "/registry/signatures/anchors/"+url.PathEscape(name)+"/refresh", nil, nil, &out); err != nil {
		c.signaturesView(w, r, rq, statusOf(err), problem(err), "", sigForms{})
		return
	}
	done := "Anchor " + out.Name + " re-read: it trusts versions " + strings.Join(out.Versions, ", ") + "."
	if out.Status != "" {
		done = "Anchor " + out.Name + " re-read: it trusts nothing now (" + out.Status + ")."
	}
	if out.Changed {
		done += " The trusted versions changed; every cached verification is recomputed."
	}
	c.signaturesView(w, r, rq, http.StatusOK, nil, done, sigForms{})
}

// confirmAnchorDelete asks before deleting an anchor, naming it and what stops verifying.
func (c *Console) confirmAnchorDelete(w http.ResponseWriter, r *http.Request, rq *request) {
	c.anchorDeletePage(w, r, rq, r.URL.Query().Get("name"), http.StatusOK, nil)
}

func (c *Console) anchorDeletePage(w http.ResponseWriter, r *http.Request, rq *request, name string, status int, prob map[string]string) {
	var a wire.SignatureAnchor
	if err := rq.api.mgmt(http.MethodGet, "/registry/signatures/anchors/"+url.PathEscape(name), nil, nil, &a); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	c.render(w, r, status, "anchordelete", rq.s, map[string]any{"Title": "Delete trust anchor", "Anchor": a, "Problem": prob,
		"CanManage": rq.api.allowed(access.AccessManage, access.ScopeRegistry)})
}

func (c *Console) deleteAnchor(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PostFormValue("name")
	if name == "" || strings.TrimSpace(r.PostFormValue("confirm")) != name {
		c.anchorDeletePage(w, r, rq, name, http.StatusBadRequest, map[string]string{"Message": "The anchor was not deleted: the name you typed does not match.", "Next": "Type " + name + " exactly to confirm."})
		return
	}
	if err := rq.api.mgmt(http.MethodDelete, "/registry/signatures/anchors/"+url.PathEscape(name), nil, nil, nil); err != nil {
		c.anchorDeletePage(w, r, rq, name, statusOf(err), problem(err))
		return
	}
	http.Redirect(w, r, Prefix+"signatures?deleted="+url.QueryEscape(name), http.StatusSeeOther)
}

// putRules replaces the policy's rules, keeping its notation document; version is the
// policy version the page was showing, so a change made meanwhile is not overwritten.
func (c *Console) putRules(rq *request, version string, change func([]wire.SignatureRule) []wire.SignatureRule) (wire.SignaturePolicy, int, map[string]string) {
	var cur wire.SignaturePolicy
	if err := rq.api.mgmt(http.MethodGet, "/registry/signatures/policy", nil, nil, &cur); err != nil {
		return cur, statusOf(err), problem(err)
	}
	if version != strconv.FormatInt(cur.Version, 10) {
		return cur, http.StatusConflict, map[string]string{"Message": "The signature policy changed since this page was opened (it is now version " + strconv.FormatInt(cur.Version, 10) + "), so nothing was saved.",
			"Next": "Review the rules shown now and make your change again."}
	}
	var out wire.SignaturePolicy
	if err := rq.api.mgmt(http.MethodPut, "/registry/signatures/policy", nil, policyDoc{Repositories: change(slices.Clone(cur.Repositories)), Notation: cur.Notation}, &out); err != nil {
		return cur, statusOf(err), problem(err)
	}
	return out, http.StatusOK, nil
}

// splitList splits a field of ids separated by commas, spaces or lines.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

// saveRule adds a rule, or replaces the rule whose scope was orig.
func (c *Console) saveRule(w http.ResponseWriter, r *http.Request, rq *request) {
	r.ParseForm()
	f := ruleForm{Orig: r.PostFormValue("orig"), Scope: strings.TrimSpace(r.PostFormValue("scope")), Mode: r.PostFormValue("mode"),
		Kinds: map[string]bool{}, CosignKeys: map[string]bool{}, Exempt: r.PostFormValue("exempt"),
		Publishers: r.PostFormValue("publishers"), Platforms: r.PostFormValue("platforms")}
	rule := wire.SignatureRule{Scope: f.Scope, Mode: f.Mode, Exempt: splitList(f.Exempt), Publishers: f.Publishers, Platforms: f.Platforms}
	for _, k := range r.PostForm["kinds"] {
		f.Kinds[k] = true
		rule.Kinds = append(rule.Kinds, k)
	}
	for _, k := range r.PostForm["cosignKeys"] {
		f.CosignKeys[k] = true
		rule.CosignKeys = append(rule.CosignKeys, k)
	}
	out, status, prob := c.putRules(rq, r.PostFormValue("version"), func(rules []wire.SignatureRule) []wire.SignatureRule {
		if i := slices.IndexFunc(rules, func(x wire.SignatureRule) bool { return f.Orig != "" && x.Scope == f.Orig }); i >= 0 {
			rules[i] = rule
			return rules
		}
		return append(rules, rule)
	})
	if prob != nil {
		c.signaturesView(w, r, rq, status, prob, "", sigForms{Rule: &f})
		return
	}
	http.Redirect(w, r, Prefix+"signatures?saved="+strconv.FormatInt(out.Version, 10), http.StatusSeeOther)
}

func (c *Console) deleteRule(w http.ResponseWriter, r *http.Request, rq *request) {
	scope := r.PostFormValue("scope")
	out, status, prob := c.putRules(rq, r.PostFormValue("version"), func(rules []wire.SignatureRule) []wire.SignatureRule {
		return slices.DeleteFunc(rules, func(x wire.SignatureRule) bool { return x.Scope == scope })
	})
	if prob != nil {
		c.signaturesView(w, r, rq, status, prob, "", sigForms{})
		return
	}
	http.Redirect(w, r, Prefix+"signatures?saved="+strconv.FormatInt(out.Version, 10), http.StatusSeeOther)
}

// setPolicyDoc replaces the whole policy with the document the user wrote, as `coffer
// registry signature policy set --file` does.
func (c *Console) setPolicyDoc(w http.ResponseWriter, r *http.Request, rq *request) {
	doc := r.PostFormValue("document")
	var out wire.SignaturePolicy
	if err := rq.api.mgmt(http.MethodPut, "/registry/signatures/policy", nil, rawJSON(doc), &out); err != nil {
		c.signaturesView(w, r, rq, statusOf(err), problem(err), "", sigForms{Doc: &doc})
		return
	}
	http.Redirect(w, r, Prefix+"signatures?saved="+strconv.FormatInt(out.Version, 10), http.StatusSeeOther)
}

// tagSignature adds the signature service's verdict on a manifest to a tag page: the kinds
// found, whether one verifies, under which anchor, or why not.
func (c *Console) tagSignature(rq *request, repo, digest string, data map[string]any) {
	var v wire.SignatureVerification
	if err := rq.api.mgmt(http.MethodGet, "/registry/signatures/verification", url.Values{"repository": {repo}, "reference": {digest}}, nil, &v); err != nil {
		data["SigProblem"] = problem(err)
		return
	}
	data["Sig"] = v
}
