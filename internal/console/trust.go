package console

import (
	"net/http"
	"strings"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// trustConfirm is what an operator types to disable content trust: the change deletes data
// that cannot be restored, so a click is not enough.
const trustConfirm = "disable content trust"

// allowed reports whether the user may do action at scope, asked of the same authorizer
// the management API uses, so the page offers a control exactly when the API would accept
// its request. Without an authorizer the control is shown and the API decides.
func (a *apiClient) allowed(action access.Action, scope access.Scope) bool {
	if a.c.cfg.Authz == nil {
		return true
	}
	return a.c.cfg.Authz.Authorize(a.r.Context(), access.Request{Principal: a.p, Action: action, Scope: scope}) == nil
}

func (c *Console) trust(w http.ResponseWriter, r *http.Request, rq *request) {
	c.trustPage(w, r, rq, http.StatusOK, nil, "", nil)
}

func (c *Console) trustPage(w http.ResponseWriter, r *http.Request, rq *request, status int, prob map[string]string, done string, deleted *wire.ContentTrustDeleted) {
	var pol wire.ContentTrustPolicy
	if err := rq.api.mgmt(http.MethodGet, "/registry/config/content-trust", nil, nil, &pol); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	c.render(w, r, status, "trust", rq.s, map[string]any{"Title": "Content trust", "Trust": pol, "Problem": prob, "Done": done,
		"Deleted": deleted, "Confirm": trustConfirm, "CanChange": rq.api.allowed(access.RegistryManage, access.ScopeRegistry)})
}

// setTrust enables content trust, or disables it after the typed confirmation; the
// management API authorizes (registry/manage), deletes the trust data and audits.
func (c *Console) setTrust(w http.ResponseWriter, r *http.Request, rq *request) {
	want := r.PostFormValue("status")
	if want != wire.ContentTrustEnabled && want != wire.ContentTrustDisabled {
		c.trustPage(w, r, rq, http.StatusBadRequest, map[string]string{"Message": "Choose enabled or disabled.", "Next": "Use the buttons on this page."}, "", nil)
		return
	}
	if want == wire.ContentTrustDisabled && strings.TrimSpace(r.PostFormValue("confirm")) != trustConfirm {
		c.trustPage(w, r, rq, http.StatusBadRequest, map[string]string{"Message": "Content trust was not disabled: the confirmation you typed does not match.",
			"Next": "Type " + trustConfirm + " exactly to delete all trust data."}, "", nil)
		return
	}
	var out wire.ContentTrustUpdated
	if err := rq.api.mgmt(http.MethodPatch, "/registry/config/content-trust", nil, wire.ContentTrustUpdate{Status: want}, &out); err != nil {
		c.trustPage(w, r, rq, statusOf(err), problem(err), "", nil)
		return
	}
	done := "Content trust is enabled: docker and notary clients can publish signed tags."
	if out.Status == wire.ContentTrustDisabled {
		done = "Content trust is disabled; its trust data and server-held keys were deleted."
	}
	c.trustPage(w, r, rq, http.StatusOK, nil, done, out.Deleted)
}
