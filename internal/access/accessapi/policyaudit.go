package accessapi

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/httpstatus"
)

// policyChangeKey carries the audit record of an access-policy change from auditPolicy,
// which sees the request before authentication, to the handler, which knows the caller.
type policyChangeKey struct{}

// auditPolicy records every attempt to change a vault's access policies (op
// OpAccessPolicySet or OpAccessPolicyDelete) in the audit trail, with the status it was
// answered: it wraps the route outside authentication, so refused tokens are recorded
// too (as denied).
func (a *API) auditPolicy(op string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			al := a.cfg.Audit
			if al == nil {
				next.ServeHTTP(w, r)
				return
			}
			vault, object := r.PathValue("vault"), r.PathValue("objectId")
			rec := &audit.Record{Time: time.Now(), Component: "vault", Operation: op,
				Target:    vault + "/access-policies/" + object,
				Resource:  "vaults/" + vault + "/access-policies/" + object,
				UserAgent: r.UserAgent()}
			if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				rec.ClientAddr = host
			}
			sw := httpstatus.NewRecorder(w)
			next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), policyChangeKey{}, rec)))
			rec.Result = audit.ResultSuccess
			switch code := sw.Status(); {
			case code == http.StatusUnauthorized || code == http.StatusForbidden:
				rec.Result = audit.ResultDenied
			case code >= 300:
				rec.Result = audit.ResultFailure
			}
			if rec.Result != audit.ResultSuccess {
				rec.Detail = fmt.Sprintf("answered %d", sw.Status())
			}
			rec.Duration = time.Since(rec.Time)
			al.Record(*rec)
		})
	}
}

// notePolicyCaller puts the authenticated caller in the access-policy change's record.
func notePolicyCaller(r *http.Request) {
	rec, ok := r.Context().Value(policyChangeKey{}).(*audit.Record)
	if !ok {
		return
	}
	if c, ok := authn.CallerFrom(r.Context()); ok {
		rec.PrincipalID, rec.PrincipalName, rec.PrincipalKind = c.Principal.ID, c.Principal.Name, string(c.Principal.Kind)
	}
}
