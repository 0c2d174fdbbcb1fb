// Package accessapi is the access part of the management API (/coffer/v1): role
// definitions, role assignments, repository tokens and vault access policies. Handlers
// parse, authorize through the access part's own decision function and call
// access.Service.
package accessapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// Config wires the endpoints.
type Config struct {
	Service *access.Service
	// VaultExists, when set, is asked before an access policy is listed or set: it answers
	// an error wrapping access.ErrNotFound for a vault that does not exist.
	VaultExists func(ctx context.Context, vault string) error
	// Audit is the audit trail (nil: nothing is recorded). Every change to a role
	// assignment, a repository token or a vault access policy is recorded, and so is every
	// refused attempt.
	Audit *audit.Log
	Log   *slog.Logger
}

// API is the access management endpoints.
type API struct {
	svc *access.Service
	cfg Config
	log *slog.Logger
}

// New returns the endpoints.
func New(cfg Config) *API {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{svc: cfg.Service, cfg: cfg, log: log}
}

// Register mounts the routes on the management router (which authenticates them).
func (a *API) Register(rt *mgmt.Router) {
	p := mgmt.Prefix
	h := rt.HandleFunc
	h("GET "+p+"/role-definitions", a.listRoleDefinitions)
	h("GET "+p+"/role-assignments", a.listAssignments)
	h("POST "+p+"/role-assignments", a.createAssignment)
	h("GET "+p+"/role-assignments/{id}", a.getAssignment)
	h("DELETE "+p+"/role-assignments/{id}", a.deleteAssignment)
	h("GET "+p+"/tokens", a.listTokens)
	h("POST "+p+"/tokens", a.createToken)
	h("GET "+p+"/tokens/{name}", a.getToken)
	h("DELETE "+p+"/tokens/{name}", a.deleteToken)
	h("GET "+p+"/vaults/{vault}/access-policies", a.listPolicies)
	rt.HandleAround("PUT "+p+"/vaults/{vault}/access-policies/{objectId}", http.HandlerFunc(a.setPolicy), a.auditPolicy(OpAccessPolicySet))
	rt.HandleAround("DELETE "+p+"/vaults/{vault}/access-policies/{objectId}", http.HandlerFunc(a.deletePolicy), a.auditPolicy(OpAccessPolicyDelete))
}

// fail maps a service error to the management API's error shape.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, access.ErrInvalid):
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, err.Error())
	case errors.Is(err, access.ErrNotFound):
		mgmt.WriteError(w, http.StatusNotFound, mgmt.CodeNotFound, err.Error())
	case errors.Is(err, access.ErrConflict):
		mgmt.WriteError(w, http.StatusConflict, mgmt.CodeConflict, err.Error())
	default:
		a.log.Error("access management request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		mgmt.WriteFailure(w, err, "the access service failed; see the server log")
	}
}

func callerID(r *http.Request) string {
	c, _ := authn.CallerFrom(r.Context())
	return c.Principal.ID
}

func (a *API) listRoleDefinitions(w http.ResponseWriter, r *http.Request) {
	// Role definitions are public to every authenticated caller.
	defs := a.svc.RoleDefinitions()
	out := make([]wire.RoleDefinition, len(defs))
	for i, d := range defs {
		out[i] = RoleDefinition(d)
	}
	mgmt.WriteJSON(w, http.StatusOK, wire.List[wire.RoleDefinition]{Value: out})
}

func (a *API) createAssignment(w http.ResponseWriter, r *http.Request) {
	var req wire.CreateRoleAssignmentRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	scope, err := access.ParseScope(req.Scope)
	if err != nil {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, err.Error())
		return
	}
	c := newChange("access", OpRoleAssignmentCreate, req.Role+" for "+req.Assignee+" at "+string(scope), scope)
	if !a.authorize(w, r, access.AccessManage, scope, c) {
		return
	}
	asg, created, err := a.svc.CreateAssignment(r.Context(), access.AssignmentSpec{
		Role: req.Role, Assignee: req.Assignee, Scope: string(scope), CreatedBy: callerID(r),
	})
	if err != nil {
		a.record(r, c, err)
		a.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		c.target = asgTarget(asg)
		a.record(r, c, nil)
		a.log.Info("role assigned", "id", asg.ID, "role", asg.Role, "principal", asg.PrincipalID, "scope", asg.Scope, "by", callerID(r))
	}
	mgmt.WriteJSON(w, status, Assignment(asg))
}

func (a *API) listAssignments(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f access.AssignmentFilter
	f.Role = q.Get("role")
	if s := q.Get("scope"); s != "" {
		scope, err := access.ParseScope(s)
		if err != nil {
			mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, err.Error())
			return
		}
		if !mgmt.Authorize(w, r, a.svc, access.AccessRead, scope) {
			return
		}
		f.Scope = scope
	}
	if ref := q.Get("assignee"); ref != "" {
		p, err := a.svc.ResolveAssignee(r.Context(), ref)
		switch {
		case err != nil && errors.Is(err, access.ErrInvalid) && uuid.Validate(ref) == nil:
			// An object id that no longer names a principal: its assignments may remain.
			f.PrincipalID = strings.ToLower(ref)
		case err != nil:
			a.fail(w, r, err)
			return
		default:
			f.PrincipalID = p.ID
		}
	}
	list, err := a.svc.ListAssignments(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// Show only the assignments whose scope the caller may read (its own, at least).
	c, _ := authn.CallerFrom(r.Context())
	out := []wire.RoleAssignment{}
	for _, asg := range list {
		if asg.PrincipalID == c.Principal.ID || a.svc.Authorize(r.Context(), access.Request{Principal: c.Principal, Action: access.AccessRead, Scope: asg.Scope}) == nil {
			out = append(out, Assignment(asg))
		}
	}
	mgmt.WriteJSON(w, http.StatusOK, wire.List[wire.RoleAssignment]{Value: out})
}

func (a *API) getAssignment(w http.ResponseWriter, r *http.Request) {
	asg, err := a.svc.GetAssignment(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	c, _ := authn.CallerFrom(r.Context())
	if asg.PrincipalID != c.Principal.ID && !mgmt.Authorize(w, r, a.svc, access.AccessRead, asg.Scope) {
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, Assignment(asg))
}

func (a *API) deleteAssignment(w http.ResponseWriter, r *http.Request) {
	asg, err := a.svc.GetAssignment(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	c := newChange("access", OpRoleAssignmentDelete, asgTarget(asg), asg.Scope)
	if !a.authorize(w, r, access.AccessManage, asg.Scope, c) {
		return
	}
	err = a.svc.DeleteAssignment(r.Context(), asg.ID)
	a.record(r, c, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("role assignment deleted", "id", asg.ID, "role", asg.Role, "principal", asg.PrincipalID, "scope", asg.Scope, "by", callerID(r))
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) {
	var req wire.CreateTokenRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	c := newChange("access", OpRepositoryTokenCreate, "tokens/"+req.Name, access.ScopeRegistry)
	if !a.authorize(w, r, access.AccessManage, access.ScopeRegistry, c) {
		return
	}
	tok, pw, err := a.svc.CreateRepositoryToken(r.Context(), req.Name, scopeMapIn(req.ScopeMap), callerID(r))
	a.record(r, c, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("repository token created", "name", tok.Name, "object_id", tok.ObjectID, "by", callerID(r))
	w.Header().Set("Cache-Control", "no-store")
	mgmt.WriteJSON(w, http.StatusCreated, wire.CreateTokenResponse{RepositoryToken: RepositoryToken(tok), Password: pw})
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) {
	if !mgmt.Authorize(w, r, a.svc, access.AccessRead, access.ScopeRegistry) {
		return
	}
	list, err := a.svc.ListRepositoryTokens(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := wire.MapSlice(list, RepositoryToken)
	mgmt.WriteJSON(w, http.StatusOK, wire.List[wire.RepositoryToken]{Value: out})
}

func (a *API) getToken(w http.ResponseWriter, r *http.Request) {
	if !mgmt.Authorize(w, r, a.svc, access.AccessRead, access.ScopeRegistry) {
		return
	}
	tok, err := a.svc.GetRepositoryToken(r.Context(), r.PathValue("name"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, RepositoryToken(tok))
}

func (a *API) deleteToken(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	c := newChange("access", OpRepositoryTokenDelete, "tokens/"+name, access.ScopeRegistry)
	if !a.authorize(w, r, access.AccessManage, access.ScopeRegistry, c) {
		return
	}
	err := a.svc.DeleteRepositoryToken(r.Context(), name)
	a.record(r, c, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("repository token deleted", "name", name, "by", callerID(r))
	w.WriteHeader(http.StatusNoContent)
}

// vaultScope validates the {vault} path value.
func vaultScope(w http.ResponseWriter, r *http.Request) (string, access.Scope, bool) {
	vault := r.PathValue("vault")
	scope, err := access.ParseScope("/vaults/" + vault)
	if err != nil || strings.Contains(vault, "/") {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "invalid vault name "+quote(vault))
		return "", "", false
	}
	return strings.ToLower(vault), scope, true
}

// vaultExists answers 404 (and false) for a vault the vault part does not know.
func (a *API) vaultExists(w http.ResponseWriter, r *http.Request, vault string) bool {
	if a.cfg.VaultExists == nil {
		return true
	}
	if err := a.cfg.VaultExists(r.Context(), vault); err != nil {
		a.fail(w, r, err)
		return false
	}
	return true
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

func (a *API) listPolicies(w http.ResponseWriter, r *http.Request) {
	vault, scope, ok := vaultScope(w, r)
	if !ok || !mgmt.Authorize(w, r, a.svc, access.VaultRead, scope) || !a.vaultExists(w, r, vault) {
		return
	}
	list, err := a.svc.ListPolicies(r.Context(), vault)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, wire.List[wire.AccessPolicy]{Value: wire.MapSlice(list, AccessPolicy)})
}

func (a *API) setPolicy(w http.ResponseWriter, r *http.Request) {
	notePolicyCaller(r)
	vault, scope, ok := vaultScope(w, r)
	if !ok {
		return
	}
	var req wire.SetAccessPolicyRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	// Access-policy changes are audited by auditPolicy, which wraps this route.
	if !mgmt.Authorize(w, r, a.svc, access.VaultManage, scope) {
		return
	}
	if !a.vaultExists(w, r, vault) {
		return
	}
	// The object id may be given as a name or client id too; policies name object ids.
	p, err := a.svc.ResolveAssignee(r.Context(), r.PathValue("objectId"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	pol, err := a.svc.SetPolicy(r.Context(), vault, p.ID, req.KeyPermissions)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("vault access policy set", "vault", vault, "object_id", p.ID, "key_permissions", strings.Join(pol.KeyPermissions, ","), "by", callerID(r))
	mgmt.WriteJSON(w, http.StatusOK, AccessPolicy(pol))
}

func (a *API) deletePolicy(w http.ResponseWriter, r *http.Request) {
	notePolicyCaller(r)
	vault, scope, ok := vaultScope(w, r)
	if !ok {
		return
	}
	objectID := r.PathValue("objectId")
	if !mgmt.Authorize(w, r, a.svc, access.VaultManage, scope) {
		return
	}
	err := a.svc.DeletePolicy(r.Context(), vault, objectID)
	if errors.Is(err, access.ErrNotFound) {
		// Perhaps a name was given: resolve it and try again.
		if p, rerr := a.svc.ResolveAssignee(r.Context(), objectID); rerr == nil && p.ID != objectID {
			objectID = p.ID
			err = a.svc.DeletePolicy(r.Context(), vault, objectID)
		}
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("vault access policy deleted", "vault", vault, "object_id", objectID, "by", callerID(r))
	w.WriteHeader(http.StatusNoContent)
}

// Audit operations.
const (
	OpRoleAssignmentCreate  = "RoleAssignmentCreate"
	OpRoleAssignmentDelete  = "RoleAssignmentDelete"
	OpRepositoryTokenCreate = "RepositoryTokenCreate"
	OpRepositoryTokenDelete = "RepositoryTokenDelete"
	OpAccessPolicySet       = "AccessPolicySet"
	OpAccessPolicyDelete    = "AccessPolicyDelete"
)

// change describes one audited change while it is handled.
type change struct {
	component string
	op        string
	target    string
	resource  string // audit resource path: vaults/V, registry, registry/repositories/R
	start     time.Time
}

func newChange(component, op, target string, scope access.Scope) *change {
	return &change{component: component, op: op, target: target, resource: strings.TrimPrefix(string(scope), "/"), start: time.Now()}
}

// recordingAuthorizer remembers the decision, so a refusal can be audited with its reason.
type recordingAuthorizer struct {
	svc *access.Service
	err *error
}

func (ra recordingAuthorizer) Authorize(ctx context.Context, req access.Request) error {
	err := ra.svc.Authorize(ctx, req)
	*ra.err = err
	return err
}

// authorize is mgmt.Authorize that also audits a refusal of the change c.
func (a *API) authorize(w http.ResponseWriter, r *http.Request, action access.Action, scope access.Scope, c *change) bool {
	var decision error
	if mgmt.Authorize(w, r, recordingAuthorizer{a.svc, &decision}, action, scope) {
		return true
	}
	if decision != nil {
		a.record(r, c, decision)
	}
	return false
}

// record writes an audit record for c with the outcome err (nil: success).
func (a *API) record(r *http.Request, c *change, err error) {
	al := a.cfg.Audit
	if al == nil {
		return
	}
	caller, _ := authn.CallerFrom(r.Context())
	rec := audit.Record{
		Time: c.start, Component: c.component, Operation: c.op, Target: c.target, Resource: c.resource,
		PrincipalID: caller.Principal.ID, PrincipalName: caller.Principal.Name, PrincipalKind: string(caller.Principal.Kind),
		UserAgent: r.UserAgent(), Duration: time.Since(c.start), Result: audit.ResultSuccess,
	}
	if host, _, herr := net.SplitHostPort(r.RemoteAddr); herr == nil {
		rec.ClientAddr = host
	}
	switch {
	case errors.Is(err, access.ErrDenied):
		rec.Result, rec.Detail = audit.ResultDenied, err.Error()
	case err != nil:
		rec.Result, rec.Detail = audit.ResultFailure, err.Error()
	}
	if aerr := al.RecordSync(r.Context(), rec); aerr != nil {
		a.log.Error("audit record not written", "operation", c.op, "target", c.target, "err", aerr)
	}
}

func asgTarget(a access.Assignment) string {
	return "roleAssignments/" + a.ID + " " + a.Role + " for " + a.PrincipalID + " at " + string(a.Scope)
}
