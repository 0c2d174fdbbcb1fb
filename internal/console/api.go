package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/token"
)

// mgmtPrefix is the management API's path prefix (mgmt.Prefix).
const mgmtPrefix = "/coffer/v1"

// maxAnswer bounds an API answer the console reads (a config blob, a long listing).
const maxAnswer = 8 << 20

// apiClient sends a page's requests to the server's own API handler, in-process, with a
// token minted for the session's principal: the API authenticates, authorizes and audits
// them exactly as it would the CLI's or docker's. The browser's address and user agent go
// with them, so the audit trail names who did it from where.
type apiClient struct {
	c       *Console
	r       *http.Request
	p       identity.Principal
	mgmtTok string
}

// rawJSON is a request body sent as the user wrote it, unparsed, so that the API's own
// validation (not the console's) says what is wrong with it.
type rawJSON []byte

// apiError is a refused or failed API request, in words for the page.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// Advice says what to do about e.
func (e *apiError) Advice() string {
	switch e.Status {
	case http.StatusUnauthorized:
		return "Your sign-in is no longer valid: sign in again."
	case http.StatusForbidden:
		return "Your roles do not allow this. Ask an Owner to assign you a role that does (see Access)."
	case http.StatusNotFound:
		return "It may have been deleted or renamed: go back to the list."
	case http.StatusConflict:
		return "The current state does not allow this change; see the message."
	case http.StatusBadRequest:
		return "Correct the value named in the message and try again."
	case http.StatusTooManyRequests:
		return "Wait a moment and try again."
	case http.StatusServiceUnavailable:
		return "The server is briefly unavailable (its database or a key cannot be reached): try again in a few seconds."
	}
	return "Try again; if it keeps failing, see the server log."
}

// recorder collects an in-process answer, up to maxAnswer bytes.
type recorder struct {
	status int
	header http.Header
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body.Len()+len(b) > maxAnswer {
		return 0, errors.New("answer too large for the console")
	}
	return r.body.Write(b)
}

// send runs one request through the API handler.
func (a *apiClient) send(method, path string, q url.Values, body []byte, hdr http.Header) (*recorder, error) {
	u := path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(a.r.Context(), method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Host = a.r.Host
	req.RemoteAddr = a.r.RemoteAddr
	req.TLS = a.r.TLS
	req.RequestURI = u
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "coffer-console ("+a.r.UserAgent()+")")
	rec := &recorder{header: http.Header{}}
	a.c.cfg.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec, nil
}

// mgmt calls a management route: in is sent as JSON, a 2xx answer decoded into out.
func (a *apiClient) mgmt(method, path string, q url.Values, in, out any) error {
	if a.mgmtTok == "" {
		iss, err := a.c.cfg.Tokens.Issue(a.r.Context(), token.Grant{Principal: a.p, Audience: wire.AudienceManagement})
		if err != nil {
			return fmt.Errorf("mint a management token: %w", err)
		}
		a.mgmtTok = iss.Raw
	}
	var body []byte
	hdr := http.Header{"Authorization": {"Bearer " + a.mgmtTok}, "Accept": {"application/json"}}
	if raw, ok := in.(rawJSON); ok { // a document the user wrote: the API judges it
		body = raw
		hdr.Set("Content-Type", "application/json")
	} else if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
		hdr.Set("Content-Type", "application/json")
	}
	rec, err := a.send(method, mgmtPrefix+path, q, body, hdr)
	if err != nil {
		return err
	}
	if rec.status >= 300 {
		var e wire.Error
		if json.Unmarshal(rec.body.Bytes(), &e) != nil || e.Error.Message == "" {
			e.Error.Message = http.StatusText(rec.status)
		}
		return &apiError{Status: rec.status, Code: e.Error.Code, Message: e.Error.Message}
	}
	if out != nil && rec.body.Len() > 0 {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// registryToken is a registry token for repo with the actions the grant policy allows this
// user (as the token endpoint would give docker), and which of actions were granted.
func (a *apiClient) registryToken(repo string, actions ...string) (string, map[string]bool, error) {
	scopes := []token.Scope{{Type: "repository", Name: repo, Actions: actions}}
	acc := a.c.cfg.Grants.RegistryAccess(a.r.Context(), a.p, scopes)
	granted := map[string]bool{}
	for _, ac := range acc {
		for _, x := range ac.Actions {
			granted[x] = true
		}
	}
	iss, err := a.c.cfg.Tokens.Issue(a.r.Context(), token.Grant{Principal: a.p, Audience: token.RegistryService, Access: acc})
	if err != nil {
		return "", nil, fmt.Errorf("mint a registry token: %w", err)
	}
	return iss.Raw, granted, nil
}

// can reports whether the user's registry grant on repo includes action.
func (a *apiClient) can(repo, action string) bool {
	acc := a.c.cfg.Grants.RegistryAccess(a.r.Context(), a.p, []token.Scope{{Type: "repository", Name: repo, Actions: []string{action}}})
	for _, ac := range acc {
		for _, x := range ac.Actions {
			if x == action {
				return true
			}
		}
	}
	return false
}

// repoName and reference are the distribution spec's grammars of a repository name and of
// a tag or digest: what a page puts into a /v2 path is checked against them first, so no
// input can change the path or add a query.
var (
	repoName  = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	reference = regexp.MustCompile(`^(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+)$`)
)

// registry calls the registry API (/v2/<repo>/<kind>/<ref>) with a token for actions.
func (a *apiClient) registry(method, repo, rest, accept string, actions ...string) (*recorder, error) {
	kind, ref, _ := strings.Cut(rest, "/")
	if len(repo) > 255 || !repoName.MatchString(repo) || !reference.MatchString(ref) || kind != "manifests" && kind != "blobs" && kind != "referrers" {
		return nil, &apiError{Status: http.StatusBadRequest, Code: "NAME_INVALID", Message: "the repository name or the tag or digest is not valid"}
	}
	tok, _, err := a.registryToken(repo, actions...)
	if err != nil {
		return nil, err
	}
	hdr := http.Header{"Authorization": {"Bearer " + tok}}
	if accept != "" {
		hdr.Set("Accept", accept)
	}
	rec, err := a.send(method, "/v2/"+repo+"/"+rest, nil, nil, hdr)
	if err != nil {
		return nil, err
	}
	if rec.status >= 300 {
		var e struct {
			Errors []struct{ Code, Message string }
		}
		msg := http.StatusText(rec.status)
		code := ""
		if json.Unmarshal(rec.body.Bytes(), &e) == nil && len(e.Errors) > 0 {
			code = e.Errors[0].Code
			if e.Errors[0].Message != "" {
				msg = e.Errors[0].Message
			}
		}
		status := rec.status
		if status == http.StatusUnauthorized {
			// The console minted this token with everything the grant policy allows the
			// user: a 401 means the user may not do this, not that the session is over.
			status = http.StatusForbidden
		}
		return rec, &apiError{Status: status, Code: code, Message: msg}
	}
	return rec, nil
}
