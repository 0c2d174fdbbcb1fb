package trustapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/notary/cryptoservice"
	"github.com/theupdateframework/notary/passphrase"
	"github.com/theupdateframework/notary/trustmanager"
	"github.com/theupdateframework/notary/tuf"
	"github.com/theupdateframework/notary/tuf/data"
	"github.com/theupdateframework/notary/tuf/signed"
	"github.com/theupdateframework/notary/tuf/utils"
)

// tufPublisher builds a collection's metadata with notary's own TUF packages (as the
// notary client does) and posts it to the trust API as multipart updates, so that each
// attack can change exactly one thing.
type tufPublisher struct {
	t       *testing.T
	e       *env
	gun     data.GUN
	hc      *http.Client
	cs      *cryptoservice.CryptoService
	repo    *tuf.Repo
	targets data.PublicKey
	snap    data.PublicKey // nil when the server manages the snapshot
}

// newPublisher starts a collection of repo: a root certificate whose CN is certCN (the
// GUN unless an attack says otherwise), a targets key, the server's timestamp key and
// either the server's snapshot key or one of the publisher's.
func newPublisher(t *testing.T, e *env, repo string, serverSnapshot bool, certCN string) *tufPublisher {
	t.Helper()
	gun := data.GUN(e.gun(repo))
	if certCN == "" {
		certCN = string(gun)
	}
	p := &tufPublisher{t: t, e: e, gun: gun,
		hc: &http.Client{Transport: dockerTransport(t, e, string(gun), "admin", e.inst.AdminPassword, "pull", "push")},
		cs: cryptoservice.NewCryptoService(trustmanager.NewKeyMemoryStore(passphrase.ConstantRetriever("x")))}
	rootCert := p.rootCert(certCN)
	p.targets = p.newKey(data.CanonicalTargetsRole)
	ts := p.serverKey(data.CanonicalTimestampRole)
	snap := p.serverKey(data.CanonicalSnapshotRole)
	if !serverSnapshot {
		p.snap = p.newKey(data.CanonicalSnapshotRole)
		snap = p.snap
	}
	p.repo = tuf.NewRepo(p.cs)
	must(t, p.repo.InitRoot(data.NewBaseRole(data.CanonicalRootRole, 1, rootCert), data.NewBaseRole(data.CanonicalTimestampRole, 1, ts),
		data.NewBaseRole(data.CanonicalSnapshotRole, 1, snap), data.NewBaseRole(data.CanonicalTargetsRole, 1, p.targets), false))
	_, err := p.repo.InitTargets(data.CanonicalTargetsRole)
	must(t, err)
	must(t, p.repo.InitSnapshot())
	must(t, p.repo.InitTimestamp())
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (p *tufPublisher) newKey(role data.RoleName) data.PublicKey {
	k, err := p.cs.Create(role, p.gun, data.ECDSAKey)
	must(p.t, err)
	return k
}

// rootCert creates a root key and the certificate (CN cn) the root role lists.
func (p *tufPublisher) rootCert(cn string) data.PublicKey {
	k := p.newKey(data.CanonicalRootRole)
	priv, _, err := p.cs.GetPrivateKey(k.ID())
	must(p.t, err)
	cert, err := cryptoservice.GenerateCertificate(priv, data.GUN(cn), time.Now().Add(-time.Hour), time.Now().Add(10*365*24*time.Hour))
	must(p.t, err)
	return utils.CertToKey(cert)
}

func (p *tufPublisher) serverKey(role data.RoleName) data.PublicKey {
	resp, err := p.hc.Get(p.e.inst.URL + "/v2/" + string(p.gun) + "/_trust/tuf/" + role.String() + ".key")
	must(p.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		p.t.Fatalf("GET %s.key: %d %s", role, resp.StatusCode, b)
	}
	k, err := data.UnmarshalPublicKey(b)
	must(p.t, err)
	return k
}

func (p *tufPublisher) marshal(s *data.Signed, err error) []byte {
	p.t.Helper()
	must(p.t, err)
	b, err := json.Marshal(s)
	must(p.t, err)
	return b
}

func year() time.Time { return time.Now().Add(365 * 24 * time.Hour) }

func (p *tufPublisher) signRoot() []byte { return p.marshal(p.repo.SignRoot(year(), nil)) }
func (p *tufPublisher) signTargets(role data.RoleName) []byte {
	return p.marshal(p.repo.SignTargets(role, year()))
}
func (p *tufPublisher) signSnapshot() []byte { return p.marshal(p.repo.SignSnapshot(year())) }

// signWith signs the signed part of s with exactly keys (bypassing the repo's own choice).
func (p *tufPublisher) signWith(s *data.Signed, keys ...data.PublicKey) []byte {
	p.t.Helper()
	s.Signatures = nil
	must(p.t, signed.Sign(p.cs, s, keys, len(keys), nil))
	b, err := json.Marshal(s)
	must(p.t, err)
	return b
}

func (p *tufPublisher) addTarget(role data.RoleName, name string, content string) {
	meta, err := data.NewFileMeta(strings.NewReader(content), "sha256")
	must(p.t, err)
	_, err = p.repo.AddTargets(role, data.Files{name: meta})
	must(p.t, err)
}

type part struct {
	role string
	data []byte
}

// apiError is the registry envelope's first error.
type apiError struct {
	Status  int
	Code    string
	Message string
}

// post sends an update; parts keep their order.
func (p *tufPublisher) post(parts ...part) apiError {
	p.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, pt := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="files"; filename=%q`, pt.role))
		h.Set("Content-Type", "application/octet-stream")
		w, err := mw.CreatePart(h)
		must(p.t, err)
		w.Write(pt.data)
	}
	mw.Close()
	return p.postRaw(mw.FormDataContentType(), body.Bytes())
}

func (p *tufPublisher) postRaw(contentType string, body []byte) apiError {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.e.inst.URL+"/v2/"+string(p.gun)+"/_trust/tuf/", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := p.hc.Do(req)
	must(p.t, err)
	defer resp.Body.Close()
	return readAPIError(resp)
}

func readAPIError(resp *http.Response) apiError {
	raw, _ := io.ReadAll(resp.Body)
	var env struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	json.Unmarshal(raw, &env)
	ae := apiError{Status: resp.StatusCode}
	if len(env.Errors) > 0 {
		ae.Code, ae.Message = env.Errors[0].Code, env.Errors[0].Message
	}
	return ae
}

func (p *tufPublisher) ok(parts ...part) {
	p.t.Helper()
	if got := p.post(parts...); got.Status != 200 {
		p.t.Fatalf("a valid update was refused: %+v", got)
	}
}

func (p *tufPublisher) refused(what string, want string, parts ...part) apiError {
	p.t.Helper()
	got := p.post(parts...)
	if got.Status != http.StatusBadRequest || got.Code != want {
		p.t.Fatalf("%s: answered %+v, want 400 %s", what, got, want)
	}
	return got
}

// getJSON reads the current metadata of role.
func (p *tufPublisher) get(role data.RoleName, out any) {
	p.t.Helper()
	resp, err := p.hc.Get(p.e.inst.URL + "/v2/" + string(p.gun) + "/_trust/tuf/" + role.String() + ".json")
	must(p.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		p.t.Fatalf("GET %s.json: %d %s", role, resp.StatusCode, b)
	}
	must(p.t, json.Unmarshal(b, out))
}

// TestAttackRollback: a lower (or equal) version of every role is refused with VERSION;
// a client-sent timestamp is ignored, so an old timestamp cannot roll the collection back.
func TestAttackRollback(t *testing.T) {
	e := start(t, nil)
	p := newPublisher(t, e, "attack/rollback", false, "")
	rel := p.newKey("targets/releases")
	must(t, p.repo.UpdateDelegationKeys("targets/releases", data.KeyList{rel}, nil, 1))
	must(t, p.repo.UpdateDelegationPaths("targets/releases", []string{""}, nil, false))
	_, err := p.repo.InitTargets("targets/releases")
	must(t, err)
	p.addTarget("targets/releases", "r1", "one")
	p.ok(part{"root", p.signRoot()}, part{"targets", p.signTargets(data.CanonicalTargetsRole)},
		part{"targets/releases", p.signTargets("targets/releases")}, part{"snapshot", p.signSnapshot()})
	// Version 2 of every role.
	p.addTarget(data.CanonicalTargetsRole, "t2", "two")
	p.addTarget("targets/releases", "r2", "two")
	p.ok(part{"root", p.signRoot()}, part{"targets", p.signTargets(data.CanonicalTargetsRole)},
		part{"targets/releases", p.signTargets("targets/releases")}, part{"snapshot", p.signSnapshot()})
	var ts0 data.SignedTimestamp
	p.get(data.CanonicalTimestampRole, &ts0)

	// Each role signed again at version 1 (the repo increments before signing), with a
	// snapshot that names exactly what is sent; the repo's state is put back afterwards.
	{
		saved := p.repo.Root
		old := *saved
		old.Signed.Version = 0
		p.repo.Root = &old
		p.refused("root rollback", "VERSION", part{"root", p.signRoot()})
		p.repo.Root = saved
	}
	for _, role := range []data.RoleName{data.CanonicalTargetsRole, "targets/releases"} {
		{
			saved, savedSnap := *p.repo.Targets[role], *p.repo.Snapshot
			p.repo.Targets[role].Signed.Version = 0
			tg := p.signTargets(role)
			p.repo.Snapshot.Signed.Version = 5
			p.refused(role.String()+" rollback", "VERSION", part{role.String(), tg}, part{"snapshot", p.signSnapshot()})
			*p.repo.Targets[role], *p.repo.Snapshot = saved, savedSnap
		}
	}
	{
		saved := *p.repo.Snapshot
		p.repo.Snapshot.Signed.Version = 0
		p.refused("snapshot rollback", "VERSION", part{"snapshot", p.signSnapshot()})
		p.repo.Snapshot.Signed.Version = 1 // the stored version again
		p.refused("snapshot replay", "VERSION", part{"snapshot", p.signSnapshot()})
		*p.repo.Snapshot = saved
	}
	{
		// An old timestamp (version 1) sent with a valid update is ignored: the server signs
		// a newer one of its own.
		p.addTarget(data.CanonicalTargetsRole, "t3", "three")
		p.repo.Snapshot.Signed.Version = 9
		stale := []byte(`{"signed":{"_type":"Timestamp","version":1,"expires":"2001-01-01T00:00:00Z","meta":{}},"signatures":[]}`)
		p.ok(part{"targets", p.signTargets(data.CanonicalTargetsRole)}, part{"snapshot", p.signSnapshot()}, part{"timestamp", stale})
		var ts1 data.SignedTimestamp
		p.get(data.CanonicalTimestampRole, &ts1)
		if ts1.Signed.Version <= ts0.Signed.Version || !ts1.Signed.Expires.After(time.Now()) {
			t.Fatalf("timestamp after an update with a stale client timestamp: version %d (was %d), expires %s", ts1.Signed.Version, ts0.Signed.Version, ts1.Signed.Expires)
		}
	}
}
