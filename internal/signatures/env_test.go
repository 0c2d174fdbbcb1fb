package signatures_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/token"
)

// env is a running coffer and an administrator's clients for it.
type env struct {
	t    testing.TB
	inst *servertest.Instance
	host string
	mgmt string // the administrator's management token
}

func startEnv(t testing.TB) *env {
	t.Helper()
	inst := servertest.Start(t, nil)
	u, _ := url.Parse(inst.URL)
	e := &env{t: t, inst: inst, host: u.Host}
	e.mgmt = e.login("admin", inst.AdminPassword)
	return e
}

func (e *env) login(user, password string) string {
	e.t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}, "service": {token.AudienceManagement}}
	resp, err := e.inst.Client.PostForm(e.inst.URL+"/oauth2/token", form)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" {
		e.t.Fatalf("log in as %s: %d %s", user, resp.StatusCode, body)
	}
	return tr.AccessToken
}

// call sends a management request with tok and decodes a success into out.
func (e *env) call(tok, method, path string, in, out any) (int, string) {
	e.t.Helper()
	var body io.Reader
	if in != nil {
		raw, _ := json.Marshal(in)
		body = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, e.inst.URL+"/coffer/v1"+path, body)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.inst.Client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, string(raw)
}

func (e *env) must(method, path string, in, out any, want int) {
	e.t.Helper()
	if status, raw := e.call(e.mgmt, method, path, in, out); status != want {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, status, raw, want)
	}
}

func (e *env) addAnchor(a wire.SignatureAnchor) {
	e.t.Helper()
	e.must(http.MethodPost, "/registry/signatures/anchors", a, nil, http.StatusCreated)
}

func (e *env) setPolicy(p wire.SignaturePolicy) {
	e.t.Helper()
	e.must(http.MethodPut, "/registry/signatures/policy", p, nil, http.StatusOK)
}

// user creates a user with role at scope and returns its password.
func (e *env) user(name, role, scope string) string {
	pw, _ := e.userID(name, role, scope)
	return pw
}

// userID creates a user with role at scope and returns its password and object id.
func (e *env) userID(name, role, scope string) (string, string) {
	e.t.Helper()
	pw := name + "-long-password-1"
	var id wire.Identity
	e.must(http.MethodPost, "/users", wire.CreateUserRequest{Name: name, Password: pw}, &id, http.StatusCreated)
	e.must(http.MethodPost, "/role-assignments", wire.CreateRoleAssignmentRequest{Role: role, Assignee: name, Scope: scope}, nil, http.StatusCreated)
	return pw, id.ID
}

// metric returns the value of the counter line that starts with series on /metrics.
func (e *env) metric(series string) string {
	e.t.Helper()
	resp, err := e.inst.Client.Get(e.inst.URL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

// auditRecords waits (bounded) for audit records of operation; the trail is written
// in batches.
func (e *env) auditRecords(op string, want int) []wire.AuditRecord {
	e.t.Helper()
	var out wire.List[wire.AuditRecord]
	for deadline := time.Now().Add(5 * time.Second); ; {
		e.must(http.MethodGet, "/audit?operation="+op, nil, &out, http.StatusOK)
		if len(out.Value) >= want || time.Now().After(deadline) {
			return out.Value
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// repo is an oras-go client of repository name, as the administrator.
func (e *env) repo(name string) *remote.Repository {
	return e.repoAs(name, "admin", e.inst.AdminPassword)
}

// repoAs is an oras-go client of repository name as user.
func (e *env) repoAs(name, user, password string) *remote.Repository {
	e.t.Helper()
	r, err := remote.NewRepository(e.host + "/" + name)
	if err != nil {
		e.t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = e.inst.Client.Transport.(*http.Transport).TLSClientConfig.Clone()
	r.Client = &auth.Client{Client: &http.Client{Transport: tr}, Cache: auth.NewCache(),
		Credential: auth.StaticCredential(e.host, auth.Credential{Username: user, Password: password})}
	return r
}

// pushImage pushes a small image (one layer, unique content) tagged tag.
func (e *env) pushImage(r *remote.Repository, tag string) ocispec.Descriptor {
	e.t.Helper()
	ctx := context.Background()
	push := func(mt string, data []byte) ocispec.Descriptor {
		d := content.NewDescriptorFromBytes(mt, data)
		if err := r.Push(ctx, d, bytes.NewReader(data)); err != nil {
			e.t.Fatalf("push blob: %v", err)
		}
		return d
	}
	cfg := push(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	layer := push(ocispec.MediaTypeImageLayer, []byte("layer of "+tag+" "+r.Reference.Repository))
	raw, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: cfg, Layers: []ocispec.Descriptor{layer}})
	m := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, raw)
	if err := r.PushReference(ctx, m, bytes.NewReader(raw), tag); err != nil {
		e.t.Fatalf("push manifest: %v", err)
	}
	return m
}

// pull GETs a manifest by reference: nil, or the registry's error.
func pull(r *remote.Repository, ref string) error {
	ctx := context.Background()
	_, rc, err := r.FetchReference(ctx, ref)
	if err != nil {
		return err
	}
	rc.Close()
	// and HEAD
	_, err = r.Resolve(ctx, ref)
	return err
}

// wantDenied checks err is a 403 DENIED whose message holds every part.
func wantDenied(t testing.TB, what string, err error, parts ...string) {
	t.Helper()
	var er *errcode.ErrorResponse
	if !errors.As(err, &er) || er.StatusCode != http.StatusForbidden || len(er.Errors) == 0 || er.Errors[0].Code != "DENIED" {
		t.Fatalf("%s: pull = %v, want 403 DENIED", what, err)
	}
	for _, p := range parts {
		if !strings.Contains(er.Errors[0].Message, p) {
			t.Fatalf("%s: refusal %q does not say %q", what, er.Errors[0].Message, p)
		}
	}
}

// testCA is a certificate authority made for a test.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name, Organization: []string{"Coffer tests"}, Country: []string{"US"}, Province: []string{"WA"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// leaf issues a code-signing certificate valid until notAfter.
func (ca *testCA) leaf(t testing.TB, name string, notAfter time.Time) (crypto.Signer, []*x509.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name, Organization: []string{"Coffer tests"}, Country: []string{"US"}, Province: []string{"WA"}},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return key, []*x509.Certificate{cert, ca.cert}
}

func (ca *testCA) pem() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
}

// notationPolicy trusts the notation anchors stores (ca:NAME) for every repository.
func notationPolicy(stores ...string) json.RawMessage {
	var ts []string
	for _, s := range stores {
		ts = append(ts, "ca:"+s)
	}
	doc := map[string]any{"version": "1.0", "trustPolicies": []any{map[string]any{
		"name": "coffer", "registryScopes": []string{"*"}, "signatureVerification": map[string]any{"level": "strict"},
		"trustStores": ts, "trustedIdentities": []string{"*"}}}}
	raw, _ := json.Marshal(doc)
	return raw
}

func decodeJSON(t testing.TB, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
}
