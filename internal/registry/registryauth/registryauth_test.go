package registryauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
	"github.com/cofferhq/coffer/internal/token"
)

// verifier knows a fixed set of raw tokens, each with its grants, for the registry audience.
type verifier map[string][]token.Access

func (v verifier) Verify(ctx context.Context, raw, audience string) (*token.Claims, error) {
	if audience != token.RegistryService {
		return nil, fmt.Errorf("%w: audience %s", token.ErrInvalidToken, audience)
	}
	acc, ok := v[raw]
	if !ok {
		return nil, fmt.Errorf("%w: unknown token", token.ErrInvalidToken)
	}
	return &token.Claims{ObjectID: "oid-" + raw, Kind: "user", Name: raw, Access: acc}, nil
}

// pullers is an Authorizer that lets principal "oid-roles" pull from team/source only.
type pullers struct{}

func (pullers) Authorize(ctx context.Context, req access.Request) error {
	if req.Principal.ID == "oid-roles" && req.Action == access.RegistryPull && req.Scope == access.RepositoryScope("team/source") {
		return nil
	}
	return fmt.Errorf("%w: %s at %s", access.ErrDenied, req.Action, req.Scope)
}

var tokens = verifier{
	"puller": {{Type: "repository", Name: "team/app", Actions: []string{"pull"}}},
	"pusher": {{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}},
	"all":    {{Type: "repository", Name: "team/app", Actions: []string{"*"}}},
	"other":  {{Type: "repository", Name: "team/other", Actions: []string{"*"}}},
	"roles":  nil,
}

func newAuth(t *testing.T, anonymousPull bool) *registryauth.Authenticator {
	t.Helper()
	a, err := registryauth.New(registryauth.Options{Verifier: tokens, Authorizer: pullers{}, AnonymousPull: anonymousPull})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func request(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://coffer.test:5000/v2/team/app/tags/list", nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return r
}

// errorCode decodes the OCI error JSON body and returns its one code.
func errorCode(t *testing.T, rec *httptest.ResponseRecorder) registry.Code {
	t.Helper()
	var body struct {
		Errors []struct {
			Code    registry.Code `json:"code"`
			Message string        `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 {
		t.Fatalf("body %q is not one OCI error: %v", rec.Body.String(), err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	return body.Errors[0].Code
}

func TestRequire(t *testing.T) {
	const realm = `Bearer realm="http://coffer.test:5000/oauth2/token",service="coffer-registry"`
	cases := []struct {
		name      string
		anonPull  bool
		tok       string
		actions   []string
		ok        bool
		challenge string
		code      registry.Code
	}{
		{"pull with a pull token", false, "puller", []string{"pull"}, true, "", ""},
		{"push needs push", false, "puller", []string{"push"}, false,
			realm + `,scope="repository:team/app:pull,push",error="insufficient_scope"`, registry.CodeDenied},
		{"push and pull", false, "pusher", []string{"pull", "push"}, true, "", ""},
		{"delete is not push", false, "pusher", []string{"delete"}, false,
			realm + `,scope="repository:team/app:delete",error="insufficient_scope"`, registry.CodeDenied},
		{"* grants delete", false, "all", []string{"delete"}, true, "", ""},
		{"* grants everything", false, "all", []string{"pull", "push", "delete", "*"}, true, "", ""},
		{"* is asked for as such", false, "pusher", []string{"*"}, false,
			realm + `,scope="repository:team/app:*",error="insufficient_scope"`, registry.CodeDenied},
		{"a token for another repository", false, "other", []string{"pull"}, false,
			realm + `,scope="repository:team/app:pull",error="insufficient_scope"`, registry.CodeDenied},
		{"anonymous without anonymous pull", false, "", []string{"pull"}, false,
			realm + `,scope="repository:team/app:pull"`, registry.CodeUnauthorized},
		{"anonymous pull", true, "", []string{"pull"}, true, "", ""},
		{"anonymous push with anonymous pull", true, "", []string{"push"}, false,
			realm + `,scope="repository:team/app:pull,push"`, registry.CodeUnauthorized},
		{"anonymous pull covers a token for another repository", true, "other", []string{"pull"}, false,
			realm + `,scope="repository:team/app:pull",error="insufficient_scope"`, registry.CodeDenied},
		{"invalid token", true, "forged", []string{"pull"}, false,
			realm + `,scope="repository:team/app:pull"`, registry.CodeUnauthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newAuth(t, c.anonPull)
			rec := httptest.NewRecorder()
			caller, ok := a.Require(rec, request(c.tok), "team/app", c.actions...)
			if ok != c.ok {
				t.Fatalf("Require = %v, want %v (%d %s)", ok, c.ok, rec.Code, rec.Body)
			}
			if ok {
				if rec.Code != http.StatusOK || rec.Body.Len() != 0 || len(rec.Header()) != 0 {
					t.Fatalf("an allowed request got an answer: %d %v %s", rec.Code, rec.Header(), rec.Body)
				}
				if caller.Anonymous() != (c.tok == "") {
					t.Fatalf("caller anonymous = %v for token %q", caller.Anonymous(), c.tok)
				}
				return
			}
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", rec.Code)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != c.challenge {
				t.Fatalf("challenge\n got %s\nwant %s", got, c.challenge)
			}
			if got := errorCode(t, rec); got != c.code {
				t.Fatalf("code %s, want %s", got, c.code)
			}
		})
	}
}

func TestChallengeScheme(t *testing.T) {
	a := newAuth(t, false)
	for _, c := range []struct {
		name  string
		setup func(r *http.Request)
		want  string
	}{
		{"plain HTTP", func(r *http.Request) {}, `Bearer realm="http://coffer.test:5000/oauth2/token",service="coffer-registry"`},
		{"behind a TLS proxy", func(r *http.Request) { r.Header.Set("X-Forwarded-Proto", "HTTPS") },
			`Bearer realm="https://coffer.test:5000/oauth2/token",service="coffer-registry"`},
	} {
		r := request("")
		c.setup(r)
		rec := httptest.NewRecorder()
		a.Challenge(rec, r, "", false, &registry.Error{Code: registry.CodeUnauthorized, Message: "authentication required"})
		if got := rec.Header().Get("WWW-Authenticate"); got != c.want {
			t.Errorf("%s: challenge %s, want %s", c.name, got, c.want)
		}
	}
	// A TLS request says https.
	r := httptest.NewRequest(http.MethodGet, "https://coffer.test/v2/", nil)
	rec := httptest.NewRecorder()
	a.Challenge(rec, r, "registry:catalog:*", true, &registry.Error{Code: registry.CodeDenied, Message: "no"})
	if got, want := rec.Header().Get("WWW-Authenticate"), `Bearer realm="https://coffer.test/oauth2/token",service="coffer-registry",scope="registry:catalog:*",error="insufficient_scope"`; got != want {
		t.Errorf("TLS challenge %s, want %s", got, want)
	}
}

func TestAuthenticate(t *testing.T) {
	a := newAuth(t, false)
	c, err := a.Authenticate(request(""))
	if err != nil || !c.Anonymous() {
		t.Fatalf("no token: %+v %v, want the anonymous caller", c, err)
	}
	c, err = a.Authenticate(request("pusher"))
	if err != nil || c.Anonymous() || !c.Allowed("repository", "team/app", "push") || c.Allowed("repository", "team/app", "delete") {
		t.Fatalf("pusher: %+v %v", c, err)
	}
	basic := request("")
	basic.SetBasicAuth("admin", "secret")
	if _, err := a.Authenticate(basic); err == nil {
		t.Fatal("Basic credentials were accepted by the registry")
	}
	_, err = a.Authenticate(request("forged"))
	if !errors.Is(err, token.ErrInvalidToken) {
		t.Fatalf("forged token: %v", err)
	}
	// The refusal of a bad token is a plain challenge with the cause.
	rec := httptest.NewRecorder()
	a.Reject(rec, request("forged"), "registry:catalog:*", err)
	if rec.Code != 401 || errorCode(t, rec) != registry.CodeUnauthorized ||
		rec.Header().Get("WWW-Authenticate") != `Bearer realm="http://coffer.test:5000/oauth2/token",service="coffer-registry",scope="registry:catalog:*"` {
		t.Fatalf("Reject: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	// A client that went away gets nothing.
	rec = httptest.NewRecorder()
	a.Reject(rec, request("forged"), "", fmt.Errorf("verify: %w", context.Canceled))
	if rec.Body.Len() != 0 || rec.Header().Get("WWW-Authenticate") != "" {
		t.Fatalf("Reject after cancel wrote %v %s", rec.Header(), rec.Body)
	}
}

func TestRefuse(t *testing.T) {
	a := newAuth(t, false)
	rec := httptest.NewRecorder()
	a.Refuse(rec, request(""), registryauth.Caller{}, "registry:catalog:*", "listing the catalog needs registry:catalog:*")
	if errorCode(t, rec) != registry.CodeUnauthorized {
		t.Fatalf("anonymous refusal: %s", rec.Body)
	}
	c, _ := a.Authenticate(request("puller"))
	rec = httptest.NewRecorder()
	a.Refuse(rec, request("puller"), c, "registry:catalog:*", "listing the catalog needs registry:catalog:*")
	if errorCode(t, rec) != registry.CodeDenied || rec.Header().Get("WWW-Authenticate") !=
		`Bearer realm="http://coffer.test:5000/oauth2/token",service="coffer-registry",scope="registry:catalog:*",error="insufficient_scope"` {
		t.Fatalf("authenticated refusal: %v %s", rec.Header(), rec.Body)
	}
}

func TestCanMountFrom(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		anonPull bool
		tok      string
		from     string
		want     bool
	}{
		{false, "puller", "team/app", true},     // the token grants pull on the source
		{false, "puller", "team/source", false}, // neither token nor roles
		{false, "roles", "team/source", true},   // the principal's roles grant pull
		{false, "roles", "team/app", false},
		{false, "", "team/source", false}, // anonymous: roles are never asked
		{true, "", "team/source", true},   // anonymous pulls
	} {
		a := newAuth(t, c.anonPull)
		caller, err := a.Authenticate(request(c.tok))
		if err != nil {
			t.Fatal(err)
		}
		if got := a.CanMountFrom(ctx, caller, c.from); got != c.want {
			t.Errorf("anonymous pull %v, token %q: CanMountFrom(%s) = %v, want %v", c.anonPull, c.tok, c.from, got, c.want)
		}
	}
}

func TestRepositoryScope(t *testing.T) {
	for _, c := range []struct {
		actions []string
		want    string
	}{
		{[]string{"pull"}, "repository:gun/x:pull"},
		{[]string{"push"}, "repository:gun/x:pull,push"},
		{[]string{"pull", "push"}, "repository:gun/x:pull,push"},
		{[]string{"delete"}, "repository:gun/x:delete"},
		{[]string{"*"}, "repository:gun/x:*"},
	} {
		if got := registryauth.RepositoryScope("gun/x", c.actions...); got != c.want {
			t.Errorf("RepositoryScope(%v) = %s, want %s", c.actions, got, c.want)
		}
	}
}

func TestNewNeedsItsServices(t *testing.T) {
	if _, err := registryauth.New(registryauth.Options{Authorizer: pullers{}}); err == nil {
		t.Error("no verifier: no error")
	}
	if _, err := registryauth.New(registryauth.Options{Verifier: tokens}); err == nil {
		t.Error("no authorizer: no error")
	}
}
