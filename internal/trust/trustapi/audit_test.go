package trustapi_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/theupdateframework/notary"
	"github.com/theupdateframework/notary/client"
	"github.com/theupdateframework/notary/tuf/data"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/trust"
)

// TestAuditOneSignPerTimestamp publishes a collection four times the way docker does
// (server-managed snapshot) and reads it back several times: the vault's audit trail holds
// exactly one successful KeySign on the collection's timestamp key per timestamp version
// served (and one on its snapshot key per snapshot version), each by the registry's
// identity.
func TestAuditOneSignPerTimestamp(t *testing.T) {
	e := start(t, nil)
	const repo = "audit/app"
	signer := dockerRepo(t, e, repo, "admin", e.inst.AdminPassword, "pull", "push")
	rk, err := signer.GetCryptoService().Create(data.CanonicalRootRole, "", data.ECDSAKey)
	must(t, err)
	must(t, signer.Initialize([]string{rk.ID()}, data.CanonicalSnapshotRole))
	for i := range 4 {
		h := bytes.Repeat([]byte{byte(i + 1)}, 32)
		must(t, signer.AddTarget(&client.Target{Name: fmt.Sprintf("v%d", i), Hashes: data.Hashes{notary.SHA256: h}, Length: 10}, data.CanonicalTargetsRole))
		must(t, signer.Publish())
	}
	reader := dockerRepo(t, e, repo, "admin", e.inst.AdminPassword, "pull")
	for range 3 {
		if _, err := reader.ListTargets(); err != nil {
			t.Fatal(err)
		}
	}
	p := &tufPublisher{t: t, e: e, gun: data.GUN(e.gun(repo)), hc: publisherClient(t, e, repo)}
	var ts data.SignedTimestamp
	var sn data.SignedSnapshot
	p.get(data.CanonicalTimestampRole, &ts)
	p.get(data.CanonicalSnapshotRole, &sn)

	var audit wire.List[wire.AuditRecord]
	if code := e.call(t, "GET", "/coffer/v1/audit?vault="+trust.DefaultVaultName+"&operation=KeySign&limit=1000", nil, &audit); code != 200 {
		t.Fatalf("audit: %d", code)
	}
	sys := e.inst.Server.Identities().SystemIdentity()
	signs := map[string]int{}
	for _, r := range audit.Value {
		if r.Operation != "KeySign" {
			continue
		}
		if r.PrincipalID != sys.ID || r.Result != "success" {
			t.Fatalf("a KeySign in the trust vault not by the registry's identity (%s), or failed: %+v", sys.ID, r)
		}
		switch {
		case strings.Contains(r.Target, "-timestamp-"):
			signs["timestamp"]++
		case strings.Contains(r.Target, "-snapshot-"):
			signs["snapshot"]++
		default:
			t.Fatalf("a KeySign on an unexpected key: %+v", r)
		}
	}
	if signs["timestamp"] != ts.Signed.Version || signs["snapshot"] != sn.Signed.Version || ts.Signed.Version != 4 {
		t.Fatalf("audit trail: %d timestamp and %d snapshot signatures; served timestamp version %d, snapshot version %d (want 4 each)",
			signs["timestamp"], signs["snapshot"], ts.Signed.Version, sn.Signed.Version)
	}
}

func publisherClient(t *testing.T, e *env, repo string) *http.Client {
	return &http.Client{Transport: dockerTransport(t, e, e.gun(repo), "admin", e.inst.AdminPassword, "pull")}
}
