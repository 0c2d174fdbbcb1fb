package console

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// The role assignments page: who holds which role at which scope, through the management
// API's /role-assignments routes, as `coffer role assignment …` does. A scope is built
// from the form's parts and checked with wire.ParseScope, the one parser the API and the
// CLI use; the API decides whether the user may assign at that scope.

// roleForm is the assign form as sent.
type roleForm struct {
	Assignee, Role, Kind, Repository, Vault, Key string
}

// scope is the form's scope in the short syntax ParseScope reads.
func (f roleForm) scope() string {
	switch f.Kind {
	case "root":
		return "/"
	case "registry":
		return "registry"
	case "repository":
		return "repository/" + f.Repository
	case "vault":
		return "vault/" + f.Vault
	case "key":
		return "vault/" + f.Vault + "/key/" + f.Key
	}
	return f.Kind
}

// roleFilters are the list's filters, passed through to the API.
var roleFilters = []string{"assignee", "role", "scope"}

// assignmentRow is an assignment with whether this user may delete it.
type assignmentRow struct {
	wire.RoleAssignment
	CanDelete bool
}

func (c *Console) roles(w http.ResponseWriter, r *http.Request, rq *request) {
	done := ""
	if q := r.URL.Query(); q.Get("assigned") != "" {
		done = "Assigned " + q.Get("assigned") + "."
	} else if q.Get("removed") != "" {
		done = "Removed the assignment of " + q.Get("removed") + "."
	}
	c.rolesView(w, r, rq, http.StatusOK, nil, done, roleForm{Kind: "repository", Role: "AcrPull"})
}

func (c *Console) rolesView(w http.ResponseWriter, r *http.Request, rq *request, status int, prob map[string]string, done string, form roleForm) {
	in := r.URL.Query()
	q := url.Values{}
	filters := map[string]string{}
	for _, f := range roleFilters {
		v := strings.TrimSpace(in.Get(f))
		filters[f] = v
		if v != "" {
			q.Set(f, v)
		}
	}
	data := map[string]any{"Title": "Role assignments", "Problem": prob, "Done": done, "F": filters, "Form": form}
	var asgs wire.List[wire.RoleAssignment]
	if err := rq.api.mgmt(http.MethodGet, "/role-assignments", q, nil, &asgs); err != nil {
		data["ListProblem"] = problem(err)
	}
	rows := make([]assignmentRow, 0, len(asgs.Value))
	for _, a := range asgs.Value {
		rows = append(rows, assignmentRow{RoleAssignment: a, CanDelete: rq.api.allowed(access.AccessManage, access.Scope(a.Scope))})
	}
	data["Assignments"], data["AssignmentsT"] = table(r, "assignments", rows,
		col("scope", byString(func(a assignmentRow) string { return a.Scope })),
		col("role", byString(func(a assignmentRow) string { return a.Role })),
		col("principal", byString(func(a assignmentRow) string { return a.PrincipalName })),
		col("created", byTime(func(a assignmentRow) time.Time { return a.CreatedAt })))
	var defs wire.List[wire.RoleDefinition]
	if err := rq.api.mgmt(http.MethodGet, "/role-definitions", nil, nil, &defs); err == nil {
		data["Roles"] = defs.Value
	}
	// The assign form is offered to a user who may manage access at the filtered scope, at
	// the registry or at the root; the API still decides at the scope actually chosen.
	can := rq.api.allowed(access.AccessManage, access.ScopeRoot) || rq.api.allowed(access.AccessManage, access.ScopeRegistry)
	if s, err := wire.ParseScope(filters["scope"]); err == nil && !can {
		can = rq.api.allowed(access.AccessManage, access.Scope(s))
	}
	data["CanAssign"] = can
	data["Principals"] = principalNames(rq, "/users", "/servicePrincipals")
	c.render(w, r, status, "roles", rq.s, data)
}

func (c *Console) assignRole(w http.ResponseWriter, r *http.Request, rq *request) {
	f := roleForm{Assignee: strings.TrimSpace(r.PostFormValue("assignee")), Role: r.PostFormValue("role"), Kind: r.PostFormValue("kind"),
		Repository: strings.TrimSpace(r.PostFormValue("repository")), Vault: strings.TrimSpace(r.PostFormValue("vault")), Key: strings.TrimSpace(r.PostFormValue("key"))}
	scope, err := wire.ParseScope(f.scope())
	if err != nil {
		c.rolesView(w, r, rq, http.StatusBadRequest, map[string]string{"Message": sentence(err.Error()), "Next": "Correct the scope and try again."}, "", f)
		return
	}
	var out wire.RoleAssignment
	if err := rq.api.mgmt(http.MethodPost, "/role-assignments", nil, wire.CreateRoleAssignmentRequest{Role: f.Role, Assignee: f.Assignee, Scope: scope}, &out); err != nil {
		c.rolesView(w, r, rq, statusOf(err), problem(err), "", f)
		return
	}
	http.Redirect(w, r, Prefix+"roles?"+url.Values{"assigned": {out.Role + " to " + out.PrincipalName + " at " + out.Scope}}.Encode(), http.StatusSeeOther)
}

// confirmUnassign shows the assignment to delete, and what its holder loses.
func (c *Console) confirmUnassign(w http.ResponseWriter, r *http.Request, rq *request) {
	var a wire.RoleAssignment
	if err := rq.api.mgmt(http.MethodGet, "/role-assignments/"+url.PathEscape(r.URL.Query().Get("id")), nil, nil, &a); err != nil {
		c.fail(w, r, rq, err)
		return
	}
	c.render(w, r, http.StatusOK, "unassign", rq.s, map[string]any{"Title": "Remove a role assignment", "A": a,
		"CanDelete": rq.api.allowed(access.AccessManage, access.Scope(a.Scope))})
}

func (c *Console) unassignRole(w http.ResponseWriter, r *http.Request, rq *request) {
	id := r.PostFormValue("id")
	var a wire.RoleAssignment
	if err := rq.api.mgmt(http.MethodGet, "/role-assignments/"+url.PathEscape(id), nil, nil, &a); err != nil {
		c.rolesView(w, r, rq, statusOf(err), problem(err), "", roleForm{Kind: "repository"})
		return
	}
	if err := rq.api.mgmt(http.MethodDelete, "/role-assignments/"+url.PathEscape(id), nil, nil, nil); err != nil {
		c.render(w, r, statusOf(err), "unassign", rq.s, map[string]any{"Title": "Remove a role assignment", "A": a, "Problem": problem(err),
			"CanDelete": rq.api.allowed(access.AccessManage, access.Scope(a.Scope))})
		return
	}
	http.Redirect(w, r, Prefix+"roles?"+url.Values{"removed": {a.Role + " from " + a.PrincipalName + " at " + a.Scope}}.Encode(), http.StatusSeeOther)
}
