package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// pageSize is the rows a table shows per page.
const pageSize = 50

// manifestAccept is every manifest type the console shows.
const manifestAccept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, " +
	"application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

type descriptor struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Platform     *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant,omitempty"`
	} `json:"platform,omitempty"`
}

type manifest struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Config       *descriptor       `json:"config,omitempty"`
	Layers       []descriptor      `json:"layers,omitempty"`
	Manifests    []descriptor      `json:"manifests,omitempty"`
	Subject      *descriptor       `json:"subject,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// isIndex tells an index (or Docker manifest list) from an image manifest.
func (m manifest) isIndex() bool {
	return m.Manifests != nil || strings.Contains(m.MediaType, "index") || strings.Contains(m.MediaType, "list")
}

// platforms lists an index's platforms.
func (m manifest) platforms() []string {
	var out []string
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS != "unknown" {
			p := d.Platform.OS + "/" + d.Platform.Architecture
			if d.Platform.Variant != "" {
				p += "/" + d.Platform.Variant
			}
			out = append(out, p)
		}
	}
	return out
}

// platformOf is d's platform as os/arch[/variant], or "".
func platformOf(d descriptor) string {
	if d.Platform == nil {
		return ""
	}
	p := d.Platform.OS + "/" + d.Platform.Architecture
	if d.Platform.Variant != "" {
		p += "/" + d.Platform.Variant
	}
	return p
}

// size is the manifest's own bytes plus what it references.
func (m manifest) size(raw int) int64 {
	n := int64(raw)
	if m.Config != nil {
		n += m.Config.Size
	}
	for _, d := range m.Layers {
		n += d.Size
	}
	for _, d := range m.Manifests {
		n += d.Size
	}
	return n
}

// encryptedLayers counts ocicrypt-encrypted layers (media type ending in +encrypted).
func (m manifest) encryptedLayers() int {
	n := 0
	for _, d := range m.Layers {
		if strings.HasSuffix(d.MediaType, "+encrypted") {
			n++
		}
	}
	return n
}

// fetchManifest gets ref's manifest through the registry API.
func (a *apiClient) fetchManifest(repo, ref string) (manifest, []byte, string, error) {
	rec, err := a.registry(http.MethodGet, repo, "manifests/"+ref, manifestAccept, "pull")
	if err != nil {
		return manifest{}, nil, "", err
	}
	var m manifest
	raw := rec.body.Bytes()
	if err := json.Unmarshal(raw, &m); err != nil {
		return manifest{}, nil, "", err
	}
	if m.MediaType == "" {
		m.MediaType = rec.header.Get("Content-Type")
	}
	return m, raw, rec.header.Get("Docker-Content-Digest"), nil
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, rq *request) {
	data := map[string]any{"Title": "Overview"}
	var repos wire.RepositoryList
	if err := rq.api.mgmt(http.MethodGet, "/registry/repositories", url.Values{"n": {"1000"}}, nil, &repos); err != nil {
		data["ReposProblem"] = problem(err)
	} else {
		var tags int
		var size int64
		for _, rp := range repos.Repositories {
			tags += rp.TagCount
			size += rp.Size
		}
		data["Repos"] = len(repos.Repositories)
		data["More"] = repos.Next != ""
		data["Tags"], data["Bytes"] = tags, size
		top := slices.Clone(repos.Repositories)
		slices.SortFunc(top, func(a, b wire.Repository) int { return int(b.Size - a.Size) })
		bars := make([]bar, 0, 8)
		for _, rp := range top[:min(8, len(top))] {
			bars = append(bars, bar{Label: rp.Name, Value: float64(rp.Size), Text: humanBytes(rp.Size), Href: Prefix + "repository?name=" + url.QueryEscape(rp.Name)})
		}
		data["SizeChart"] = barChart("Stored bytes per repository", bars)
	}
	var enc wire.EncryptionStatus
	if err := rq.api.mgmt(http.MethodGet, "/registry/encryption", nil, nil, &enc); err != nil {
		data["EncProblem"] = problem(err)
	} else {
		data["Enc"] = enc
	}
	var ct wire.ContentTrustPolicy
	if err := rq.api.mgmt(http.MethodGet, "/registry/config/content-trust", nil, nil, &ct); err != nil {
		data["TrustProblem"] = problem(err)
	} else {
		data["Trust"] = ct.Status
	}
	var sp wire.SignaturePolicy
	if err := rq.api.mgmt(http.MethodGet, "/registry/signatures/policy", nil, nil, &sp); err != nil {
		data["SigProblem"] = problem(err)
	} else {
		data["SigMode"], data["SigRules"] = policySummary(sp)
	}
	var recs wire.List[wire.AuditRecord]
	if err := rq.api.mgmt(http.MethodGet, "/audit", url.Values{"since": {"24h"}, "limit": {"1000"}}, nil, &recs); err != nil {
		data["AuditProblem"] = problem(err)
	} else {
		var events []wire.AuditRecord
		for _, rec := range slices.Backward(recs.Value) {
			if rec.Result != "success" || !routine(rec.Operation) {
				events = append(events, rec)
			}
			if len(events) == 8 {
				break
			}
		}
		data["Events"], data["EventsT"] = table(r, "events", events, col("time", byTime(func(a wire.AuditRecord) time.Time { return a.Time })),
			col("who", byString(func(a wire.AuditRecord) string { return a.PrincipalName })),
			col("operation", byString(func(a wire.AuditRecord) string { return a.Operation })),
			col("target", byString(func(a wire.AuditRecord) string { return a.Target })),
			col("result", byString(func(a wire.AuditRecord) string { return a.Result })))
		if r.URL.Query().Get("events.sort") == "" { // newest first unless asked
			slices.Reverse(data["Events"].([]wire.AuditRecord))
			tv := data["EventsT"].(tableView)
			tv.Desc = true
			data["EventsT"] = tv
		}
		data["OpsChart"] = opsChart(recs.Value, c.cfg.Now())
	}
	c.render(w, r, http.StatusOK, "overview", rq.s, data)
}

// policySummary is the signature policy in a few words: the strictest mode any rule sets
// (off without rules) and each rule as "scope: mode".
func policySummary(p wire.SignaturePolicy) (string, []string) {
	rank := map[string]int{wire.SignatureModeOff: 0, wire.SignatureModeAudit: 1, wire.SignatureModeEnforce: 2}
	mode := wire.SignatureModeOff
	rules := make([]string, 0, len(p.Repositories))
	for _, r := range p.Repositories {
		if rank[r.Mode] > rank[mode] {
			mode = r.Mode
		}
		rules = append(rules, r.Scope+": "+r.Mode)
	}
	return mode, rules
}

func (c *Console) repositories(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	params := url.Values{"n": {strconv.Itoa(pageSize)}}
	if last := q.Get("last"); last != "" {
		params.Set("last", last)
	}
	var list wire.RepositoryList
	if err := rq.api.mgmt(http.MethodGet, "/registry/repositories", params, nil, &list); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	sortBy := q.Get("sort")
	switch sortBy {
	case "size":
		slices.SortStableFunc(list.Repositories, func(a, b wire.Repository) int { return int(b.Size - a.Size) })
	case "tags":
		slices.SortStableFunc(list.Repositories, func(a, b wire.Repository) int { return b.TagCount - a.TagCount })
	default:
		sortBy = "name"
	}
	c.render(w, r, http.StatusOK, "repositories", rq.s, map[string]any{"Title": "Repositories", "List": list.Repositories, "Next": list.Next, "Sort": sortBy, "Last": q.Get("last")})
}

type tagRow struct {
	wire.Tag
	Size      int64
	Kind      string
	Platforms []string
	Encrypted int
	// Verdict is "verified", "not verified" or "" (no verification answer).
	Verdict string
	Problem string
}

func (c *Console) repository(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	name := q.Get("name")
	if name == "" {
		http.Redirect(w, r, Prefix+"repositories", http.StatusSeeOther)
		return
	}
	var tl wire.TagList
	if err := rq.api.mgmt(http.MethodGet, "/registry/tags", url.Values{"repository": {name}}, nil, &tl); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	sortBy := q.Get("sort")
	if sortBy == "pushed" {
		slices.SortStableFunc(tl.Tags, func(a, b wire.Tag) int { return b.Updated.Compare(a.Updated) })
	} else {
		sortBy = "name"
		slices.SortStableFunc(tl.Tags, func(a, b wire.Tag) int { return strings.Compare(a.Name, b.Name) })
	}
	pg, _ := strconv.Atoi(q.Get("page"))
	pg = max(pg, 1)
	lo := min((pg-1)*pageSize, len(tl.Tags))
	hi := min(lo+pageSize, len(tl.Tags))
	rows := make([]tagRow, 0, hi-lo)
	for _, t := range tl.Tags[lo:hi] {
		row := tagRow{Tag: t, Kind: "image"}
		if t.Verified != nil {
			row.Verdict = "not verified"
			if *t.Verified {
				row.Verdict = "verified"
			}
		}
		m, raw, _, err := rq.api.fetchManifest(name, t.Digest)
		if err != nil {
			row.Problem = "manifest unreadable"
		} else {
			row.Size = m.size(len(raw))
			row.Encrypted = max(t.EncryptedLayers, m.encryptedLayers())
			if m.isIndex() {
				row.Kind, row.Platforms = "index", m.platforms()
			} else if m.ArtifactType != "" {
				row.Kind = m.ArtifactType
			}
		}
		rows = append(rows, row)
	}
	data := map[string]any{"Title": name, "Repo": name, "Tags": rows, "Sort": sortBy, "Total": len(tl.Tags), "Page": pg,
		"CanDelete": rq.api.can(name, "delete")}
	if pg > 1 {
		data["Prev"] = strconv.Itoa(pg - 1)
	}
	if hi < len(tl.Tags) {
		data["NextPage"] = strconv.Itoa(pg + 1)
	}
	c.render(w, r, http.StatusOK, "repository", rq.s, data)
}

func (c *Console) tag(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	repo, ref := q.Get("repository"), q.Get("tag")
	if d := q.Get("digest"); d != "" {
		ref = d
	}
	if repo == "" || ref == "" {
		http.Redirect(w, r, Prefix+"repositories", http.StatusSeeOther)
		return
	}
	m, raw, digest, err := rq.api.fetchManifest(repo, ref)
	if err != nil {
		c.fail(w, r, rq, err)
		return
	}
	data := map[string]any{"Title": repo + ":" + ref, "Repo": repo, "Tag": q.Get("tag"), "Digest": digest, "Manifest": m,
		"ManifestJSON": pretty(raw), "Size": m.size(len(raw)), "Platforms": m.platforms(), "CanDelete": rq.api.can(repo, "delete")}
	c.tagSignature(rq, repo, digest, data)
	if len(m.Manifests) > 0 {
		data["Children"], data["ChildrenT"] = table(r, "manifests", m.Manifests, col("platform", byString(platformOf)),
			col("digest", byString(func(d descriptor) string { return d.Digest })), col("size", byNumber(func(d descriptor) int64 { return d.Size })))
	}
	if m.Config != nil && m.Config.Size <= 1<<20 {
		if rec, err := rq.api.registry(http.MethodGet, repo, "blobs/"+m.Config.Digest, "", "pull"); err == nil {
			data["ConfigJSON"] = pretty(rec.body.Bytes())
		} else {
			data["ConfigProblem"] = problem(err)
		}
	}
	if rec, err := rq.api.registry(http.MethodGet, repo, "referrers/"+digest, "", "pull"); err == nil {
		var idx manifest
		if json.Unmarshal(rec.body.Bytes(), &idx) == nil {
			data["Referrers"], data["ReferrersT"] = table(r, "referrers", idx.Manifests, col("type", byString(func(d descriptor) string { return d.ArtifactType })),
				col("digest", byString(func(d descriptor) string { return d.Digest })), col("size", byNumber(func(d descriptor) int64 { return d.Size })))
		}
	} else {
		data["ReferrersProblem"] = problem(err)
	}
	host := r.Host
	refSep := ":" + q.Get("tag")
	if q.Get("tag") == "" {
		refSep = "@" + digest
	}
	data["Pull"] = []string{
		"docker pull " + host + "/" + repo + refSep,
		"skopeo copy docker://" + host + "/" + repo + "@" + digest + " oci:" + lastSegment(repo),
		"crane pull " + host + "/" + repo + refSep + " " + lastSegment(repo) + ".tar",
	}
	c.render(w, r, http.StatusOK, "tag", rq.s, data)
}

func lastSegment(repo string) string { return repo[strings.LastIndexByte(repo, '/')+1:] }

func pretty(raw []byte) string {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

// confirmDelete asks before deleting a tag (or a manifest by digest), naming it.
func (c *Console) confirmDelete(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	repo, tag, digest := q.Get("repository"), q.Get("tag"), q.Get("digest")
	if repo == "" || tag == "" && digest == "" {
		http.Redirect(w, r, Prefix+"repositories", http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "delete", rq.s, map[string]any{"Title": "Delete", "Repo": repo, "Tag": tag, "Digest": digest,
		"CanDelete": rq.api.can(repo, "delete")})
}

func (c *Console) deleteTag(w http.ResponseWriter, r *http.Request, rq *request) {
	repo, tag, digest := r.PostFormValue("repository"), r.PostFormValue("tag"), r.PostFormValue("digest")
	want := tag
	if tag == "" {
		want = digest
	}
	data := map[string]any{"Title": "Delete", "Repo": repo, "Tag": tag, "Digest": digest, "CanDelete": rq.api.can(repo, "delete")}
	if want == "" || r.PostFormValue("confirm") != want {
		data["Problem"] = map[string]string{"Message": "The name you typed does not match.", "Next": "Type " + want + " exactly to confirm."}
		c.render(w, r, http.StatusBadRequest, "delete", rq.s, data)
		return
	}
	var err error
	if tag != "" {
		err = rq.api.mgmt(http.MethodDelete, "/registry/tags", url.Values{"repository": {repo}, "tag": {tag}}, nil, nil)
	} else {
		_, err = rq.api.registry(http.MethodDelete, repo, "manifests/"+digest, "", "delete")
	}
	if err != nil {
		var ae *apiError
		status := http.StatusInternalServerError
		if errors.As(err, &ae) {
			status = ae.Status
		}
		data["Problem"] = problem(err)
		c.render(w, r, status, "delete", rq.s, data)
		return
	}
	http.Redirect(w, r, Prefix+"repository?name="+url.QueryEscape(repo)+"&deleted="+url.QueryEscape(want), http.StatusSeeOther)
}

// routine tells reads and key uses (KeyGet, KeyList, KeyWrap, ...) from changes.
func routine(op string) bool {
	for _, w := range []string{"Get", "List", "Wrap", "Unwrap", "Encrypt", "Decrypt", "Sign", "Verify"} {
		if strings.HasSuffix(op, w) || strings.Contains(op, w+"Key") {
			return true
		}
	}
	return false
}

// opsChart counts key operations per hour over the last 24 hours.
func opsChart(recs []wire.AuditRecord, now time.Time) chart {
	const hours = 24
	counts := make([]float64, hours)
	start := now.Add(-hours * time.Hour)
	for _, rec := range recs {
		if rec.Component != "vault" || rec.Time.Before(start) {
			continue
		}
		h := int(rec.Time.Sub(start) / time.Hour)
		if h >= 0 && h < hours {
			counts[h]++
		}
	}
	bars := make([]bar, hours)
	for i := range bars {
		t := start.Add(time.Duration(i) * time.Hour).UTC()
		bars[i] = bar{Label: t.Format("15:00"), Value: counts[i], Text: strconv.Itoa(int(counts[i]))}
	}
	return columnChart("Key operations per hour, last 24 hours (UTC)", bars)
}
