package trustapi

import (
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/trust"
)

// Management serves /coffer/v1/registry/config/content-trust.
type Management struct {
	svc   *trust.Service
	authz access.Authorizer
	audit *audit.Log
	log   *slog.Logger
}

// NewManagement returns the content-trust policy routes.
func NewManagement(svc *trust.Service, az access.Authorizer, al *audit.Log, log *slog.Logger) *Management {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Management{svc: svc, authz: az, audit: al, log: log}
}

// Register mounts the routes through the route table.
func (m *Management) Register(rt *mgmt.Router) {
	p := mgmt.Prefix + "/registry/config/content-trust"
	rt.HandleFunc("GET "+p, m.show)
	rt.HandleFunc("PATCH "+p, m.update)
}

func (m *Management) show(w http.ResponseWriter, r *http.Request) {
	if !mgmt.Authorize(w, r, m.authz, access.RegistryList, access.ScopeRegistry) {
		return
	}
	st, err := m.svc.Status(r.Context())
	if err != nil {
		m.log.ErrorContext(r.Context(), "read the content-trust policy", "err", err)
		mgmt.WriteFailure(w, err, "the content-trust policy could not be read; the server log has the cause")
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, wire.ContentTrustPolicy{Status: st})
}

func (m *Management) update(w http.ResponseWriter, r *http.Request) {
	if !mgmt.Authorize(w, r, m.authz, access.RegistryManage, access.ScopeRegistry) {
		return
	}
	var req wire.ContentTrustUpdate
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	status := strings.ToLower(strings.TrimSpace(req.Status))
	if status != wire.ContentTrustEnabled && status != wire.ContentTrustDisabled {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "status must be enabled or disabled, not "+clipQ(req.Status))
		return
	}
	start := time.Now()
	wiped, err := m.svc.SetStatus(r.Context(), status)
	rec := audit.Record{Time: start, Component: "registry", Operation: "ContentTrustUpdate", Target: "content-trust " + status,
		Resource: "registry/config/content-trust", UserAgent: r.UserAgent(), Result: audit.ResultSuccess, Duration: time.Since(start)}
	if c, ok := mgmt.Caller(r.Context()); ok {
		rec.PrincipalID, rec.PrincipalName, rec.PrincipalKind = c.Principal.ID, c.Principal.Name, string(c.Principal.Kind)
	}
	if host, _, herr := net.SplitHostPort(r.RemoteAddr); herr == nil {
		rec.ClientAddr = host
	}
	if err != nil {
		rec.Result, rec.Detail = audit.ResultFailure, err.Error()
	} else if status == wire.ContentTrustDisabled {
		rec.Detail = wipedDetail(wiped)
	}
	if m.audit != nil {
		if aerr := m.audit.RecordSync(r.Context(), rec); aerr != nil {
			m.log.ErrorContext(r.Context(), "audit record not written", "operation", rec.Operation, "err", aerr)
		}
	}
	if err != nil {
		m.log.ErrorContext(r.Context(), "update the content-trust policy", "err", err)
		mgmt.WriteFailure(w, err, "the content-trust policy could not be changed; the server log has the cause")
		return
	}
	m.log.InfoContext(r.Context(), "content-trust policy changed", "status", status, "deleted_collections", wiped.Collections, "deleted_keys", wiped.Keys)
	out := wire.ContentTrustUpdated{Status: status}
	if status == wire.ContentTrustDisabled {
		out.Deleted = &wire.ContentTrustDeleted{Collections: wiped.Collections, Metadata: wiped.Metadata, Keys: wiped.Keys}
	}
	mgmt.WriteJSON(w, http.StatusOK, out)
}

func wipedDetail(w trust.Wiped) string {
	return "deleted " + itoa(w.Collections) + " trusted collections, " + itoa(w.Metadata) + " metadata files, " + itoa(w.Keys) + " server-held keys"
}

func itoa(n int) string { return strconv.Itoa(n) }

func clipQ(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return `"` + s + `"`
}
