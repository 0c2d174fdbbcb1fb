// Package identityapi is the identity part of the management API (/coffer/v1): users,
// service principals, managed identities and whoami. Handlers parse, authorize through the
// access part and call identity.Service.
package identityapi

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// API is the identity management endpoints.
type API struct {
	svc   *identity.Service
	authz access.Authorizer
	log   *slog.Logger
}

// New returns the endpoints; authz decides every request; log gets the causes of the
// failures it answers as 500.
func New(svc *identity.Service, authz access.Authorizer, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{svc: svc, authz: authz, log: log}
}

// Register mounts the routes on the management router (which authenticates them).
func (a *API) Register(rt *mgmt.Router) {
	p := mgmt.Prefix
	h := rt.HandleFunc
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
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
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
		a.log.ErrorContext(r.Context(), "identity management request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		mgmt.WriteFailure(w, err, "the identity service failed; see the server log")
	}
}

func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	c, _ := authn.CallerFrom(r.Context())
	out := wire.Whoami{Principal: Principal(c.Principal), TenantID: a.svc.TenantID()}
	if c.Claims != nil && c.Claims.ExpiresAt != nil {
		out.ExpiresAt = c.Claims.ExpiresAt.Time.UTC()
	}
	mgmt.WriteJSON(w, http.StatusOK, out)
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) {
	if !a.can(w, r, access.IdentityManage) {
		return
	}
	var req wire.CreateUserRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	if _, err := a.svc.CreateUser(r.Context(), req.Name, req.Password); err != nil {
		a.fail(w, r, err)
		return
	}
	info, err := a.svc.Show(r.Context(), identity.KindUser, req.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusCreated, Identity(info))
}

// setPassword: a user may change their own password with the current one (a token alone
// is not the password: a stolen ten-minute token must not take the account over);
// changing another user's needs identity/manage and no current password.
func (a *API) setPassword(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	c, _ := authn.CallerFrom(r.Context())
	self := c.Principal.Kind == identity.KindUser && (c.Principal.Name == ref || c.Principal.ID == ref)
	if !self && !a.can(w, r, access.IdentityManage) {
		return
	}
	var req wire.PasswordRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	if self {
		if req.CurrentPassword == "" {
			mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "changing your own password needs your current password (currentPassword; 'coffer user passwd' asks for it)")
			return
		}
		if _, err := a.svc.Authenticate(r.Context(), c.Principal.Name, req.CurrentPassword); err != nil {
			if errors.Is(err, identity.ErrInvalidCredentials) {
				mgmt.WriteError(w, http.StatusForbidden, mgmt.CodeForbidden, "the current password is wrong")
				return
			}
			a.fail(w, r, err)
			return
		}
	}
	if err := a.svc.SetPassword(r.Context(), ref, req.Password); err != nil {
		a.fail(w, r, err)
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
			a.fail(w, r, err)
			return
		}
		out := make([]wire.Identity, len(list))
		for i, info := range list {
			out[i] = Identity(info)
		}
		mgmt.WriteJSON(w, http.StatusOK, wire.List[wire.Identity]{Value: out})
	}
}

func (a *API) show(kind identity.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.can(w, r, access.IdentityRead) {
			return
		}
		info, err := a.svc.Show(r.Context(), kind, r.PathValue("ref"))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		mgmt.WriteJSON(w, http.StatusOK, Identity(info))
	}
}

func (a *API) del(kind identity.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.can(w, r, access.IdentityManage) {
			return
		}
		if err := a.svc.Delete(r.Context(), kind, r.PathValue("ref")); err != nil {
			a.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
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
	var req wire.CreateServicePrincipalRequest
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
		a.fail(w, r, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusCreated, a.creds(info, sec))
}

func (a *API) creds(info identity.Info, sec identity.Secret) wire.ServicePrincipalCredentials {
	return wire.ServicePrincipalCredentials{ServicePrincipal: Identity(info), TenantID: a.svc.TenantID(), ClientID: info.ClientID,
		ClientSecret: sec.Value, SecretID: sec.ID, SecretExpiresAt: sec.ExpiresAt}
}

func (a *API) resetCredential(w http.ResponseWriter, r *http.Request) {
	if !a.can(w, r, access.IdentityManage) {
		return
	}
	var req wire.ResetCredentialRequest
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
		a.fail(w, r, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, a.creds(info, sec))
}

func (a *API) mi(info identity.Info) wire.ManagedIdentity {
	return wire.ManagedIdentity{Identity: Identity(info), PrincipalID: info.ID, TenantID: a.svc.TenantID()}
}

func (a *API) createMI(w http.ResponseWriter, r *http.Request) {
	if !a.can(w, r, access.IdentityManage) {
		return
	}
	var req wire.CreateManagedIdentityRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	p, err := a.svc.CreateManagedIdentity(r.Context(), req.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	info, err := a.svc.Show(r.Context(), identity.KindManagedIdentity, p.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusCreated, a.mi(info))
}

// listMI lists user-assigned managed identities and the registry's system-assigned one.
func (a *API) listMI(w http.ResponseWriter, r *http.Request) {
	if !a.can(w, r, access.IdentityRead) {
		return
	}
	out := []wire.ManagedIdentity{}
	for _, kind := range []identity.Kind{identity.KindSystemIdentity, identity.KindManagedIdentity} {
		list, err := a.svc.List(r.Context(), kind)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		for _, info := range list {
			out = append(out, a.mi(info))
		}
	}
	mgmt.WriteJSON(w, http.StatusOK, wire.List[wire.ManagedIdentity]{Value: out})
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
		a.fail(w, r, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, a.mi(info))
}

// Principal is p on the wire.
func Principal(p identity.Principal) wire.Principal {
	return wire.Principal{ID: p.ID, Kind: string(p.Kind), Name: p.Name, ClientID: p.ClientID}
}

// Identity is info on the wire.
func Identity(info identity.Info) wire.Identity {
	out := wire.Identity{Principal: Principal(info.Principal), CreatedAt: info.CreatedAt}
	if info.Credentials != nil {
		out.Credentials = make([]wire.Credential, len(info.Credentials))
		for i, c := range info.Credentials {
			out.Credentials[i] = wire.Credential{ID: c.ID, Hint: c.Hint, CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt}
		}
	}
	return out
}
