package encryptionapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/encryption/encryptionapi"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/seal"
	"github.com/cofferhq/coffer/internal/seal/keyring"
	"github.com/cofferhq/coffer/internal/token"
)

// fakeService records the calls and answers err.
type fakeService struct {
	err   error
	calls []string
}

func (f *fakeService) Show(ctx context.Context) (keyring.Status, error) {
	f.calls = append(f.calls, "show")
	return keyring.Status{Status: "enabled", EncryptedAtRest: true, KeySource: "customer", KeyAccessible: true,
		KeyVaultProperties: keyring.KeyVaultProperties{Identity: "[system]", KeyIdentifier: "https://kv/keys/k", VersionedKeyIdentifier: "https://kv/keys/k/1"}}, nil
}
func (f *fakeService) Enable(ctx context.Context, keyID, ident string) (keyring.Settings, error) {
	f.calls = append(f.calls, "enable "+keyID+" "+ident)
	return keyring.Settings{}, f.err
}
func (f *fakeService) Rotate(ctx context.Context, keyID, ident string) (keyring.Settings, error) {
	f.calls = append(f.calls, "rotate "+keyID+" "+ident)
	return keyring.Settings{}, f.err
}
func (f *fakeService) Disable(ctx context.Context) error {
	f.calls = append(f.calls, "disable")
	return keyring.ErrCannotDisable
}
func (f *fakeService) CheckRotation(ctx context.Context) (bool, error) {
	f.calls = append(f.calls, "rotation")
	return false, f.err
}
func (f *fakeService) NewRootKey(ctx context.Context) (uint32, error) {
	f.calls = append(f.calls, "root-key")
	return 2, f.err
}

// verifier accepts the token "good" for the management audience as principal "op".
type verifier struct{}

func (verifier) Verify(ctx context.Context, raw, audience string) (*token.Claims, error) {
	if raw != "good" || audience != token.AudienceManagement {
		return nil, errors.New("bad token")
	}
	return &token.Claims{ObjectID: "op", Kind: identity.KindUser}, nil
}

// authorizer allows what allow says and records the request.
type authorizer struct {
	allow bool
	got   *access.Request
}

func (a *authorizer) Authorize(ctx context.Context, req access.Request) error {
	*a.got = req
	if !a.allow {
		return fmt.Errorf("%w: no", access.ErrDenied)
	}
	return nil
}

func serve(t *testing.T, svc encryptionapi.Service, allow bool) (*httptest.Server, *access.Request) {
	t.Helper()
	var got access.Request
	mux := http.NewServeMux()
	rt, err := mgmt.NewRouter(mux, verifier{})
	if err != nil {
		t.Fatal(err)
	}
	encryptionapi.New(svc, &authorizer{allow: allow, got: &got}, nil).Register(rt)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &got
}

func call(t *testing.T, srv *httptest.Server, method, path, tok, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const p = "/coffer/v1/registry/encryption"

// TestAuthentication: every route needs a management token and RegistryManage at /registry.
func TestAuthentication(t *testing.T) {
	routes := [][2]string{{"GET", p}, {"POST", p + "/enable"}, {"POST", p + "/rotate-key"}, {"POST", p + "/disable"}, {"POST", p + "/rotation"}}
	for _, r := range routes {
		svc := &fakeService{}
		srv, _ := serve(t, svc, false)
		if code, body := call(t, srv, r[0], r[1], "", "{}"); code != 401 || !strings.Contains(body, `"Unauthorized"`) {
			t.Errorf("%s %s without a token: %d %s", r[0], r[1], code, body)
		}
		if code, _ := call(t, srv, r[0], r[1], "bad", "{}"); code != 401 {
			t.Errorf("%s %s with a bad token: %d", r[0], r[1], code)
		}
		code, body := call(t, srv, r[0], r[1], "good", "{}")
		if code != 403 || !strings.Contains(body, `"Forbidden"`) {
			t.Errorf("%s %s without RegistryManage: %d %s", r[0], r[1], code, body)
		}
		if len(svc.calls) != 0 {
			t.Errorf("%s %s reached the service unauthorized: %v", r[0], r[1], svc.calls)
		}
	}
	srv, got := serve(t, &fakeService{}, true)
	if code, _ := call(t, srv, "GET", p, "good", ""); code != 200 || got.Action != access.RegistryManage || got.Scope != access.Scope("/registry") || got.Principal.ID != "op" {
		t.Fatalf("show: %d, authorization asked %+v", code, *got)
	}
}

// TestRequestsAndAnswers: the JSON in and out, and the status and error code of each kind
// of failure.
func TestRequestsAndAnswers(t *testing.T) {
	const shown = `{"status":"enabled","encryptedAtRest":true,"keySource":"customer","keyVaultProperties":{"identity":"[system]","keyIdentifier":"https://kv/keys/k","versionedKeyIdentifier":"https://kv/keys/k/1","keyRotationEnabled":false},"keyAccessible":true,"rootKeyGeneration":0}` + "\n"
	svc := &fakeService{}
	srv, _ := serve(t, svc, true)
	if code, body := call(t, srv, "GET", p, "good", ""); code != 200 || body != shown {
		t.Fatalf("show: %d %q", code, body)
	}
	if code, body := call(t, srv, "POST", p+"/enable", "good", `{"keyEncryptionKey":"https://kv/keys/k","identity":"mi"}`); code != 200 || body != shown {
		t.Fatalf("enable: %d %s", code, body)
	}
	if code, body := call(t, srv, "POST", p+"/rotate-key", "good", `{"keyEncryptionKey":"https://kv/keys/k"}`); code != 200 || body != shown {
		t.Fatalf("rotate-key: %d %s", code, body)
	}
	if code, body := call(t, srv, "POST", p+"/rotation", "good", ""); code != 200 || body != shown {
		t.Fatalf("rotation: %d %s", code, body)
	}
	if code, body := call(t, srv, "POST", p+"/root-key", "good", ""); code != 200 || body != shown {
		t.Fatalf("root-key: %d %s", code, body)
	}
	want := []string{"show", "enable https://kv/keys/k mi", "show", "rotate https://kv/keys/k ", "show", "rotation", "show", "root-key", "show"}
	if fmt.Sprint(svc.calls) != fmt.Sprint(want) {
		t.Fatalf("service calls %q, want %q", svc.calls, want)
	}
	if code, body := call(t, srv, "POST", p+"/enable", "good", `{}`); code != 400 || !strings.Contains(body, `"BadParameter"`) || !strings.Contains(body, "keyEncryptionKey is required") {
		t.Fatalf("enable without a key: %d %s", code, body)
	}
	if code, body := call(t, srv, "POST", p+"/enable", "good", `{"keyEncryptionKey":"x","other":1}`); code != 400 || !strings.Contains(body, "invalid JSON body") {
		t.Fatalf("enable with an unknown field: %d %s", code, body)
	}
	if code, body := call(t, srv, "POST", p+"/disable", "good", ""); code != 409 || !strings.Contains(body, `"Conflict"`) || !strings.Contains(body, "cannot be disabled") {
		t.Fatalf("disable: %d %s", code, body)
	}
	cases := []struct {
		err  error
		code int
		says string
	}{
		{keyring.ErrAlreadyEnabled, 409, `"Conflict"`},
		{fmt.Errorf("x: %w", kek.ErrForbidden), 400, `"BadParameter"`},
		{fmt.Errorf("x: %w", kek.ErrUnsupportedKeyType), 400, `"BadParameter"`},
		{fmt.Errorf("x: %w", identity.ErrNotFound), 400, `"BadParameter"`},
		{fmt.Errorf("x: %w", kek.ErrUnavailable), 503, `"InternalError"`},
		{fmt.Errorf("x: %w", seal.ErrKeyUnavailable), 503, `"InternalError"`},
		{errors.New("disk on fire at /var/lib/coffer"), 500, "the request failed; see the server log"},
	}
	for _, c := range cases {
		srv, _ := serve(t, &fakeService{err: c.err}, true)
		code, body := call(t, srv, "POST", p+"/rotate-key", "good", `{"keyEncryptionKey":"https://kv/keys/k"}`)
		if code != c.code || !strings.Contains(body, c.says) {
			t.Errorf("%v: %d %s, want %d with %s", c.err, code, body, c.code, c.says)
		}
		if c.code == 500 && strings.Contains(body, "disk on fire") {
			t.Errorf("a 500 leaked the internal error: %s", body)
		}
	}
}
