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

// published starts a collection of repo with one target and returns its publisher.
func published(t *testing.T, e *env, repo string, serverSnapshot bool) *tufPublisher {
	t.Helper()
	p := newPublisher(t, e, repo, serverSnapshot, "")
	p.addTarget(data.CanonicalTargetsRole, "v1", "one")
	parts := []part{{"root", p.signRoot()}, {"targets", p.signTargets(data.CanonicalTargetsRole)}}
	if !serverSnapshot {
		parts = append(parts, part{"snapshot", p.signSnapshot()})
	}
	p.ok(parts...)
	return p
}

// TestAttackMixAndMatch: a snapshot that names an older targets file than the one stored
// (or than the one uploaded beside it) is refused.
func TestAttackMixAndMatch(t *testing.T) {
	e := start(t, nil)
	p := published(t, e, "attack/mix", false)
	oldTargets, _ := p.repo.Targets[data.CanonicalTargetsRole].ToSigned()
	oldBytes, _ := json.Marshal(oldTargets)
	oldMeta, err := data.NewFileMeta(bytes.NewReader(oldBytes), "sha256")
	must(t, err)
	p.addTarget(data.CanonicalTargetsRole, "v2", "two")
	p.ok(part{"targets", p.signTargets(data.CanonicalTargetsRole)}, part{"snapshot", p.signSnapshot()})

	// A new snapshot, correctly signed, that names targets version 1 beside stored version 2.
	p.repo.Snapshot.Signed.Version++
	p.repo.Snapshot.Signed.Meta[data.CanonicalTargetsRole.String()] = oldMeta
	s, err := p.repo.Snapshot.ToSigned()
	must(t, err)
	got := p.refused("snapshot naming old targets", "INVALID_UPDATE", part{"snapshot", p.signWith(s, p.snap)})
	if !strings.Contains(got.Message, "snapshot") {
		t.Fatalf("mix-and-match refusal does not say the snapshot is wrong: %+v", got)
	}
	// The same snapshot with the old targets uploaded beside it: a rollback of targets.
	p.refused("old targets and a snapshot naming them", "VERSION", part{"targets", oldBytes}, part{"snapshot", p.signWith(s, p.snap)})
	// Uploaded targets that differ from what the uploaded snapshot names.
	p.addTarget(data.CanonicalTargetsRole, "v3", "three")
	newTargets := p.signTargets(data.CanonicalTargetsRole)
	p.repo.Snapshot.Signed.Version++
	s, _ = p.repo.Snapshot.ToSigned()
	p.refused("targets not the ones the snapshot names", "INVALID_UPDATE", part{"targets", newTargets}, part{"snapshot", p.signWith(s, p.snap)})
}

// TestAttackSignatures: a targets file signed by a key the root does not name, with no
// signature, or with fewer signatures than the role's threshold is refused.
func TestAttackSignatures(t *testing.T) {
	e := start(t, nil)
	p := published(t, e, "attack/sigs", true)
	p.addTarget(data.CanonicalTargetsRole, "v2", "two")
	p.repo.Targets[data.CanonicalTargetsRole].Signed.Version++
	s, err := p.repo.Targets[data.CanonicalTargetsRole].ToSigned()
	must(t, err)
	stranger := p.newKey(data.CanonicalTargetsRole)
	p.refused("targets signed by a key the root does not name", "INVALID_UPDATE", part{"targets", p.signWith(s, stranger)})
	unsigned, _ := json.Marshal(data.Signed{Signed: s.Signed})
	p.refused("targets with no signature", "INVALID_UPDATE", part{"targets", unsigned})
	// A signature over other bytes: the targets signed, then one target changed.
	good := p.signWith(s, p.targets)
	tampered := bytes.Replace(good, []byte(`"v2"`), []byte(`"v9"`), 1)
	if bytes.Equal(good, tampered) {
		t.Fatal("test bug: nothing tampered")
	}
	p.refused("targets whose signature does not cover its bytes", "INVALID_UPDATE", part{"targets", tampered})
	// The valid one still goes through.
	p.ok(part{"targets", good})

	// A threshold of 2 targets keys, met by one signature only.
	q := newPublisher(t, e, "attack/threshold", true, "")
	second := q.newKey(data.CanonicalTargetsRole)
	must(t, q.repo.AddBaseKeys(data.CanonicalTargetsRole, second))
	q.repo.Root.Signed.Roles[data.CanonicalTargetsRole].Threshold = 2
	q.addTarget(data.CanonicalTargetsRole, "v1", "one")
	root := q.signRoot()
	q.repo.Targets[data.CanonicalTargetsRole].Signed.Version = 1
	ts, err := q.repo.Targets[data.CanonicalTargetsRole].ToSigned()
	must(t, err)
	q.refused("targets below its threshold", "INVALID_UPDATE", part{"root", root}, part{"targets", q.signWith(ts, q.targets)})
	q.ok(part{"root", root}, part{"targets", q.signWith(ts, q.targets, second)})
}

// TestAttackRoot: a root rotation signed only by the new root key, and a first root whose
// certificate's CN is not the GUN, are refused; a rotation signed by both goes through.
func TestAttackRoot(t *testing.T) {
	e := start(t, nil)
	p := published(t, e, "attack/root", true)
	newCert := p.rootCert(string(p.gun))
	must(t, p.repo.ReplaceBaseKeys(data.CanonicalRootRole, newCert))
	// Signed by the new key only: notary's SignRoot would add the old key, so sign by hand.
	p.repo.Root.Signed.Version++
	s, err := p.repo.Root.ToSigned()
	must(t, err)
	got := p.refused("root rotation not signed by the old root", "INVALID_UPDATE", part{"root", p.signWith(s, newCert)})
	if !strings.Contains(got.Message, "root") {
		t.Fatalf("refusal does not name the root: %+v", got)
	}
	p.repo.Root.Signed.Version--
	p.ok(part{"root", p.signRoot()}) // SignRoot signs with the old and the new key

	q := newPublisher(t, e, "attack/cn", true, "127.0.0.1:1/someone/else")
	q.addTarget(data.CanonicalTargetsRole, "v1", "one")
	got = q.refused("root certificate for another GUN", "INVALID_UPDATE", part{"root", q.signRoot()}, part{"targets", q.signTargets(data.CanonicalTargetsRole)})
	if !strings.Contains(got.Message, "root") {
		t.Fatalf("refusal does not name the root: %+v", got)
	}
}

// TestAttackDelegationPaths: a delegation that lists a target outside the paths delegated
// to it, or delegates further outside them, is refused.
func TestAttackDelegationPaths(t *testing.T) {
	e := start(t, nil)
	p := published(t, e, "attack/deleg", true)
	rel := p.newKey("targets/releases")
	must(t, p.repo.UpdateDelegationKeys("targets/releases", data.KeyList{rel}, nil, 1))
	must(t, p.repo.UpdateDelegationPaths("targets/releases", []string{"release/"}, nil, false))
	_, err := p.repo.InitTargets("targets/releases")
	must(t, err)
	p.addTarget("targets/releases", "release/1", "one")
	p.ok(part{"targets", p.signTargets(data.CanonicalTargetsRole)}, part{"targets/releases", p.signTargets("targets/releases")})

	// A target outside release/, written into the delegation's file by hand (notary's
	// AddTargets would refuse it).
	meta, _ := data.NewFileMeta(strings.NewReader("evil"), "sha256")
	p.repo.Targets["targets/releases"].Signed.Targets["latest"] = meta
	p.refused("delegation writing outside its paths", "INVALID_UPDATE", part{"targets/releases", p.signTargets("targets/releases")})
	delete(p.repo.Targets["targets/releases"].Signed.Targets, "latest")

	// A sub-delegation with paths outside release/.
	sub := p.newKey("targets/releases/sub")
	must(t, p.repo.UpdateDelegationKeys("targets/releases/sub", data.KeyList{sub}, nil, 1))
	p.repo.Targets["targets/releases"].Signed.Delegations.Roles[0].Paths = []string{"other/"}
	p.refused("sub-delegation outside the parent's paths", "INVALID_UPDATE", part{"targets/releases", p.signTargets("targets/releases")})
}

// TestAttackMalformedUpload: bodies that are not a well-formed notary update answer
// MALFORMED_UPLOAD (or MALFORMED_JSON, INVALID_ROLE) and store nothing.
func TestAttackMalformedUpload(t *testing.T) {
	e := start(t, nil)
	p := published(t, e, "attack/body", true)
	var before data.SignedTimestamp
	p.get(data.CanonicalTimestampRole, &before)
	big := bytes.Repeat([]byte(" "), 4<<20+10)
	for _, c := range []struct {
		what, want string
		ct         string
		body       []byte
		parts      []part
	}{
		{what: "not multipart", want: "MALFORMED_UPLOAD", ct: "application/json", body: []byte(`{}`)},
		{what: "no boundary", want: "MALFORMED_UPLOAD", ct: "multipart/form-data", body: []byte("--x\r\n")},
		{what: "truncated", want: "MALFORMED_UPLOAD", ct: "multipart/form-data; boundary=xyz",
			body: []byte("--xyz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"targets\"\r\n\r\n{\"signed\":")},
		{what: "no parts", want: "MALFORMED_UPLOAD", ct: "multipart/form-data; boundary=xyz", body: []byte("--xyz--\r\n")},
		{what: "part without a filename", want: "MALFORMED_UPLOAD", ct: "multipart/form-data; boundary=xyz",
			body: []byte("--xyz\r\nContent-Disposition: form-data; name=\"files\"\r\n\r\n{}\r\n--xyz--\r\n")},
		{what: "unknown role", want: "INVALID_ROLE", parts: []part{{"targets/../root", []byte(`{}`)}}},
		{what: "not JSON", want: "MALFORMED_JSON", parts: []part{{"targets", []byte(`{"signed":`)}}},
		{what: "one role over 4 MiB", want: "MALFORMED_UPLOAD", parts: []part{{"targets", big}}},
		{what: "the update over 32 MiB", want: "MALFORMED_UPLOAD", parts: []part{
			{"targets/a", big}, {"targets/b", big}, {"targets/c", big}, {"targets/d", big}, {"targets/e", big},
			{"targets/f", big}, {"targets/g", big}, {"targets/h", big}, {"targets/i", big}}},
	} {
		var got apiError
		if c.parts != nil {
			if c.what == "the update over 32 MiB" {
				for i := range c.parts {
					c.parts[i].data = big[:4<<20-1]
				}
			}
			got = p.post(c.parts...)
		} else {
			got = p.postRaw(c.ct, c.body)
		}
		if got.Status != http.StatusBadRequest || got.Code != c.want {
			t.Errorf("%s: answered %+v, want 400 %s", c.what, got, c.want)
		}
	}
	var after data.SignedTimestamp
	p.get(data.CanonicalTimestampRole, &after)
	if after.Signed.Version != before.Signed.Version {
		t.Fatalf("a refused update changed the timestamp: version %d → %d", before.Signed.Version, after.Signed.Version)
	}
}
