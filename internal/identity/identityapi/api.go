// Package identityapi is the identity part of the management API (/coffer/v1): users,
// service principals, managed identities and whoami. Handlers parse, authorize through the
// access part and call identity.Service.
package identityapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/mgmt"
)

// API is the identity management endpoints.
type API struct {
	svc      *identity.Service
	verifier authn.Verifier
	authz    access.Authorizer
}

// New returns the endpoints. authz is read at each request (the access part is mounted
// after identity).
func New(svc *identity.Service, verifier authn.Verifier, authz func() access.Authorizer) *API {
	return &API{svc: svc, verifier: verifier, authz: lateAuthorizer{authz}}
}

// lateAuthorizer asks the access part's Authorizer as it is at request time.
type lateAuthorizer struct{ get func() access.Authorizer }

func (l lateAuthorizer) Authorize(ctx context.Context, req access.Request) error {
	if az := l.get(); az != nil {
		return az.Authorize(ctx, req)
	}
	// No decision function wired: deny.
	return fmt.Errorf("%w: no authorizer is configured", access.ErrDenied)
}

// Register mounts the routes on mux.
func (a *API) Register(mux *http.ServeMux) {
	p := mgmt.Prefix
	h := func(pattern string, fn http.HandlerFunc) { mux.Handle(pattern, mgmt.Protect(a.verifier, fn)) }
	h("GET "+p+"/whoami", a.whoami)
	h("POST "+p+"/users", a.createUser)
	h("GET "+p+"/users", a.list(identity.KindUser))
	h("GET "+p+"/users/{ref}", a.show(identity.KindUser))
	h("PUT "+p+"/users/{ref}/password", a.setPassword)
	h("DELETE "+p+"/users/{ref}", a.del(identity.KindUser))
	h("POST "+p+"/servicePrincipals", a.createSP)
	h("GET "+p+"/servicePrincipals", a.list(identity.KindServicePrincipal))
	h("GET "+p+"/servicePrincipals/{ref}", a.show(identity.KindServicePrincipal))
	h("POST "+p+"/servicePrincipals/{ref}/credentials/reset", a.resetCredential)
	h("DELETE "+p+"/servicePrincipals/{ref}", a.del(identity.KindServicePrincipal))
	h("POST "+p+"/managedIdentities", a.createMI)
	h("GET "+p+"/managedIdentities", a.listMI)
	h("GET "+p+"/managedIdentities/{ref}", a.showMI)
	h("DELETE "+p+"/managedIdentities/{ref}", a.del(identity.KindManagedIdentity))
}

func (a *API) can(w http.ResponseWriter, r *http.Request, action access.Action) bool {
	return mgmt.Authorize(w, r, a.authz, action, access.ScopeRoot)
}

// fail maps a service error to the management API's error shape.
func fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, identity.ErrNotFound):
		mgmt.WriteError(w, http.StatusNotFound, mgmt.CodeNotFound, err.Error())
	case errors.Is(err, identity.ErrConflict):
		mgmt.WriteError(w, http.StatusConflict, mgmt.CodeConflict, err.Error())
	case errors.Is(err, identity.ErrRefused):
		mgmt.WriteError(w, http.StatusConflict, mgmt.CodeConflict, err.Error())
	case errors.Is(err, identity.ErrInvalid), errors.Is(err, identity.ErrAmbiguous):
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, err.Error())
	default:
		mgmt.WriteError(w, http.StatusInternalServerError, mgmt.CodeInternal, "the identity service failed; see the server log")
	}
}

// Whoami is the answer of GET /coffer/v1/whoami.
type Whoami struct {
	identity.Principal
	TenantID  string    `json:"tenantId"`
	ExpiresAt time.Time `json:"tokenExpiresAt"`
}

func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	c, _ := authn.CallerFrom(r.Context())
	out := Whoami{Principal: c.Principal, TenantID: a.svc.TenantID()}
	if c.Claims != nil && c.Claims.ExpiresAt != nil {
		out.ExpiresAt = c.Claims.ExpiresAt.Time.UTC()
	}
	mgmt.WriteJSON(w, http.StatusOK, out)
}

// CreateUserRequest is the body of POST /coffer/v1/users.
type CreateUserRequest struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) {
	if !a.can(w, r, access.IdentityManage) {
		return
	}
	var req CreateUserRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	if _, err := a.svc.CreateUser(r.Context(), req.Name, req.Password); err != nil {
		fail(w, err)
		return
	}
	info, err := a.svc.Show(r.Context(), identity.KindUser, req.Name)
	if err != nil {
		fail(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusCreated, info)
}

// PasswordRequest is the body of PUT /coffer/v1/users/{name}/password.
type PasswordRequest struct {
	Password string `json:"password"`
}

// setPassword: a user may change their own password; changing another's needs
// identity/manage.
func (a *API) setPassword(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	c, _ := authn.CallerFrom(r.Context())
	self := c.Principal.Kind == identity.KindUser && (c.Principal.Name == ref || c.Principal.ID == ref)
	if !self && !a.can(w, r, access.IdentityManage) {
		return
	}
	var req PasswordRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	if err := a.svc.SetPassword(r.Context(), ref, req.Password); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) list(kind identity.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.can(w, r, access.IdentityRead) {
			return
		}
		list, err := a.svc.List(r.Context(), kind)
		if err != nil {
			fail(w, err)
			return
		}
		if list == nil {
			list = []identity.Info{}
		}
		mgmt.WriteJSON(w, http.StatusOK, map[string]any{"value": list})
	}
}

func (a *API) show(kind identity.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.can(w, r, access.IdentityRead) {
			return
		}
		info, err := a.svc.Show(r.Context(), kind, r.PathValue("ref"))
		if err != nil {
			fail(w, err)
			return
		}
		mgmt.WriteJSON(w, http.StatusOK, info)
	}
}

func (a *API) del(kind identity.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.can(w, r, access.IdentityManage) {
			return
		}
		if err := a.svc.Delete(r.Context(), kind, r.PathValue("ref")); err != nil {
			fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// CreateSPRequest is the body of POST /coffer/v1/servicePrincipals.
type CreateSPRequest struct {
	Name string `json:"name"`
	// SecretLifetimeDays is the client secret's lifetime (default 365).
	SecretLifetimeDays int `json:"secretLifetimeDays,omitempty"`
}

// SPCredentials is the answer of creating a service principal or resetting its
// credential: the secret appears here once and never again.
type SPCredentials struct {
	ServicePrincipal identity.Info `json:"servicePrincipal"`
	TenantID         string        `json:"tenantId"`
	ClientID         string        `json:"clientId"`
	ClientSecret     string        `json:"clientSecret"`
	SecretID         string        `json:"secretId"`
	SecretExpiresAt  time.Time     `json:"secretExpiresAt"`
}

func lifetime(days int) (time.Duration, bool) {
	if days < 0 || days > 3650 {
		return 0, false
	}
	return time.Duration(days) * 24 * time.Hour, true
}

func (a *API) createSP(w http.ResponseWriter, r *http.Request) {
	if !a.can(w, r, access.IdentityManage) {
		return
	}
	var req CreateSPRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	life, ok := lifetime(req.SecretLifetimeDays)
	if !ok {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "secretLifetimeDays must be between 1 and 3650")
		return
	}
	info, sec, err := a.svc.CreateServicePrincipal(r.Context(), req.Name, life)
	if err != nil {
		fail(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusCreated, a.creds(info, sec))
}

func (a *API) creds(info identity.Info, sec identity.Secret) SPCredentials {
	return SPCredentials{ServicePrincipal: info, TenantID: a.svc.TenantID(), ClientID: info.ClientID,
		ClientSecret: sec.Value, SecretID: sec.ID, SecretExpiresAt: sec.ExpiresAt}
}

// ResetCredentialRequest is the body of POST /coffer/v1/servicePrincipals/{ref}/credentials/reset.
type ResetCredentialRequest struct {
	// Append keeps the existing secrets (otherwise they are removed).
	Append             bool `json:"append,omitempty"`
	SecretLifetimeDays int  `json:"secretLifetimeDays,omitempty"`
}

func (a *API) resetCredential(w http.ResponseWriter, r *http.Request) {
	if !a.can(w, r, access.IdentityManage) {
		return
	}
	var req ResetCredentialRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	life, ok := lifetime(req.SecretLifetimeDays)
	if !ok {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "secretLifetimeDays must be between 1 and 3650")
		return
	}
	info, sec, err := a.svc.ResetCredential(r.Context(), r.PathValue("ref"), life, req.Append)
	if err != nil {
		fail(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, a.creds(info, sec))
}

// CreateMIRequest is the body of POST /coffer/v1/managedIdentities.
type CreateMIRequest struct {
	Name string `json:"name"`
}

// ManagedIdentity is a managed identity as the API shows it, with the ids Azure names
// principalId (object id) and clientId.
type ManagedIdentity struct {
	identity.Info
	PrincipalID string `json:"principalId"`
	TenantID    string `json:"tenantId"`
}

func (a *API) mi(info identity.Info) ManagedIdentity {
	return ManagedIdentity{Info: info, PrincipalID: info.ID, TenantID: a.svc.TenantID()}
}

func (a *API) createMI(w http.ResponseWriter, r *http.Request) {
	if !a.can(w, r, access.IdentityManage) {
		return
	}
	var req CreateMIRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	p, err := a.svc.CreateManagedIdentity(r.Context(), req.Name)
	if err != nil {
		fail(w, err)
		return
	}
	info, err := a.svc.Show(r.Context(), identity.KindManagedIdentity, p.ID)
	if err != nil {
		fail(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusCreated, a.mi(info))
}

// listMI lists user-assigned managed identities and the registry's system-assigned one.
func (a *API) listMI(w http.ResponseWriter, r *http.Request) {
	if !a.can(w, r, access.IdentityRead) {
		return
	}
	out := []ManagedIdentity{}
	for _, kind := range []identity.Kind{identity.KindSystemIdentity, identity.KindManagedIdentity} {
		list, err := a.svc.List(r.Context(), kind)
		if err != nil {
			fail(w, err)
			return
		}
		for _, info := range list {
			out = append(out, a.mi(info))
		}
	}
	mgmt.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
}

func (a *API) showMI(w http.ResponseWriter, r *http.Request) {
	if !a.can(w, r, access.IdentityRead) {
		return
	}
	ref := r.PathValue("ref")
	info, err := a.svc.Show(r.Context(), identity.KindManagedIdentity, ref)
	if errors.Is(err, identity.ErrNotFound) {
		info, err = a.svc.Show(r.Context(), identity.KindSystemIdentity, ref)
	}
	if err != nil {
		fail(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, a.mi(info))
}
