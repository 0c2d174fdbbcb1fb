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

// TestPagesRender renders every page with empty and with typical data: a template that
// fails at run time fails here, not in front of a user.
func TestPagesRender(t *testing.T) {
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	c := &Console{pages: pages, cfg: Config{Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}}

	now := time.Now()
	typical := map[string]map[string]any{
		"audit": {"Records": []wire.AuditRecord{{Seq: 3, Time: now, Operation: "create", Result: "success"}}, "F": map[string]string{"key": "k", "identity": "", "vault": "", "operation": "", "result": ""},
			"Verify": &wire.AuditVerifyResult{OK: true}, "Detail": wire.AuditRecord{Seq: 3}},
		"tag": {"Manifest": manifest{MediaType: "x", Annotations: map[string]string{"a": "b"}}, "Repo": "r", "Tag": "t", "Size": int64(1), "Pull": []string{"docker pull x"}},
		"key": {"Key": wire.Key{Name: "k"}, "VaultName": "v", "Versions": []wire.Key{{Version: "1"}}},
		"overview": {"Repos": 1, "Tags": 2, "Bytes": int64(3), "Enc": wire.EncryptionStatus{}, "Events": []wire.AuditRecord{{}},
			"SizeChart": barChart("t", []bar{{Label: "a", Value: 1}}), "OpsChart": columnChart("o", []bar{{Label: "x", Value: 2}})},
		"kmscluster": {"Cluster": wire.KMSCluster{Name: "prod", KeyManagement: "PMK", PluginStatus: &wire.KMSPluginStatus{Healthz: "ok"}}, "Form": kmsForm{}, "CanManage": true,
			"DecryptOnly": []wire.KMSDecryptKey{{KeyID: "k"}}},
		"kmsconfirm":   {"Cluster": wire.KMSCluster{Name: "prod"}, "Form": kmsForm{Name: "prod", KeyManagement: "CMK", KeyID: "k"}, "CanManage": true},
		"anchordelete": {"Anchor": wire.SignatureAnchor{Name: "a", Kind: "notation"}, "CanManage": true},
		"unassign":     {"A": wire.RoleAssignment{ID: "1", Scope: "/registry"}, "CanDelete": true},
		"signatures": {"CanManage": true, "Anchors": []wire.SignatureAnchor{{Name: "a", Kind: "cosign", KeyURL: "u", Fingerprints: []string{"ab"}}}, "Kinds": signatureKinds,
			"Rules": []wire.SignatureRule{{Scope: "*", Mode: "audit", Exempt: []string{"x"}}}, "AnchorForm": anchorForm{}, "CosignAnchors": []string{"a"},
			"RuleForm": ruleForm{Orig: "*", Kinds: map[string]bool{"cosign": true}}, "Notation": "{}"},
		"kms":   {"CanManage": true, "Clusters": []wire.KMSCluster{{Name: "p"}}, "Form": kmsForm{}, "IdentityChoices": []string{"sp"}},
		"roles": {"CanAssign": true, "Assignments": []assignmentRow{{CanDelete: true}}, "Form": roleForm{}, "Roles": []wire.RoleDefinition{{Name: "AcrPull"}}, "F": map[string]string{}},
	}
	se := &Session{CSRF: "tok"}
	for name := range pages {
		data := typical[name]
		if data == nil {
			data = map[string]any{}
		}
		{
			w := httptest.NewRecorder()
			c.render(w, httptest.NewRequest("GET", "/console/", nil), 200, name, se, data)
			if w.Code != 200 || !strings.Contains(w.Body.String(), "</html>") {
				t.Errorf("page %s with %v: %d %s", name, data, w.Code, w.Body.String())
			}
		}
	}
}

// TestRegistryPathsChecked: a repository or reference that could change the /v2 path or
// add a query is refused before any request is made.
func TestRegistryPathsChecked(t *testing.T) {
	a := &apiClient{c: &Console{}, r: httptest.NewRequest("GET", "/console/", nil)}
	for _, tc := range []struct{ repo, rest string }{
		{"../coffer/v1/users", "manifests/v1"}, {"team/app", "manifests/v1?x=1"}, {"team/app", "manifests/../../x"},
		{"Team/App", "manifests/v1"}, {"team/app", "uploads/x"}, {"team/app", "manifests/v1#frag"}, {"", "manifests/v1"},
	} {
		if _, err := a.registry("GET", tc.repo, tc.rest, ""); err == nil || !strings.Contains(err.Error(), "not valid") {
			t.Errorf("registry(%q, %q) = %v, want refused", tc.repo, tc.rest, err)
		}
	}
	for _, ref := range []string{"v1", "sha256:" + strings.Repeat("a", 64), "1.2.3_rc-1"} {
		if !reference.MatchString(ref) {
			t.Errorf("reference %q refused", ref)
		}
	}
}
