package cli

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

const scopeHelp = `Scopes (a grant at a scope covers everything below it):
  /                                 everything
  /registry          registry       the registry and every repository
  /registry/repositories/NAME       one repository (also: repository/NAME)
  /vaults/VAULT                     one vault and its keys (also: vault/VAULT)
  /vaults/VAULT/keys/KEY            one key (also: vault/VAULT/key/KEY)`

func roleCommand() *cobra.Command {
	role := &cobra.Command{
		Use:   "role",
		Short: "Built-in roles and role assignments (who may do what, where)",
		Long: `Roles are named sets of actions (AcrPull, Key Vault Crypto User, ...). A role assignment
gives a role to a principal (user, service principal, managed identity) at a scope.

` + scopeHelp,
	}
	role.AddCommand(roleDefinitionCommand(), roleAssignmentCommand())
	return role
}

func roleDefinitionCommand() *cobra.Command {
	def := &cobra.Command{Use: "definition", Short: "Built-in role definitions"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the built-in roles and the actions they grant",
		Example: `  coffer role definition list
  coffer role definition list --name AcrPush -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.List[wire.RoleDefinition]
			if err := c.do(cmd.Context(), "GET", "/coffer/v1/role-definitions", nil, &out); err != nil {
				return err
			}
			name, _ := cmd.Flags().GetString("name")
			if name != "" {
				kept := out.Value[:0]
				for _, d := range out.Value {
					if strings.EqualFold(d.Name, name) {
						kept = append(kept, d)
					}
				}
				if len(kept) == 0 {
					return fmt.Errorf("no built-in role %q: run 'coffer role definition list' to see them", name)
				}
				out.Value = kept
			}
			return printResult(cmd, out.Value, func() Table {
				t := Table{Header: []string{"NAME", "ACTIONS", "DESCRIPTION"}}
				for _, d := range out.Value {
					t.Rows = append(t.Rows, []string{d.Name, summarizeActions(d.EffectiveActions), d.Description})
				}
				return t
			})
		},
	}
	list.Flags().String("name", "", "show only this role")
	def.AddCommand(list)
	return def
}

// summarizeActions shortens a long action list for the table view.
func summarizeActions(acts []string) string {
	if len(acts) <= 4 {
		return strings.Join(acts, ",")
	}
	return fmt.Sprintf("%s,... (%d actions; -o json for all)", strings.Join(acts[:3], ","), len(acts))
}

func roleAssignmentCommand() *cobra.Command {
	asg := &cobra.Command{
		Use:   "assignment",
		Short: "Create, list and delete role assignments",
		Long:  "A role assignment gives a role to a principal at a scope.\n\n" + scopeHelp,
	}

	create := &cobra.Command{
		Use:   "create --role ROLE --assignee ID|NAME --scope SCOPE",
		Short: "Assign a role to a principal at a scope",
		Long: `Assign a built-in role to a user, service principal or managed identity at a scope.
Creating an assignment that already exists is not an error: the existing one is shown.
Repository tokens cannot be assigned roles; their scope map is all they may do.

` + scopeHelp,
		Example: `  # Let the CI service principal pull and push one repository
  coffer role assignment create --role AcrPush --assignee ci-bot --scope repository/app

  # Let a managed identity wrap and unwrap with the keys of one vault
  coffer role assignment create --role "Key Vault Crypto Service Encryption User" \
    --assignee registry-kek --scope /vaults/team1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			role, _ := cmd.Flags().GetString("role")
			assignee, _ := cmd.Flags().GetString("assignee")
			scope, _ := cmd.Flags().GetString("scope")
			if _, err := wire.ParseScope(scope); err != nil {
				return err
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var a wire.RoleAssignment
			if err := c.do(cmd.Context(), "POST", "/coffer/v1/role-assignments", wire.CreateRoleAssignmentRequest{Role: role, Assignee: assignee, Scope: scope}, &a); err != nil {
				return err
			}
			return printResult(cmd, a, func() Table { return assignmentTable([]wire.RoleAssignment{a}) })
		},
	}
	create.Flags().String("role", "", "built-in role name (see 'coffer role definition list')")
	create.Flags().String("assignee", "", "object id, client id or name of the principal")
	create.Flags().String("scope", "", "scope of the assignment (see above)")
	for _, f := range []string{"role", "assignee", "scope"} {
		create.MarkFlagRequired(f)
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List role assignments",
		Long: `List role assignments you may read. --scope shows the assignments that apply at that scope:
those at it, below it, and those inherited from the scopes above it.`,
		Example: `  coffer role assignment list
  coffer role assignment list --assignee ci-bot
  coffer role assignment list --scope vault/team1 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := listAssignments(cmd)
			if err != nil {
				return err
			}
			return printResult(cmd, list, func() Table { return assignmentTable(list) })
		},
	}
	list.Flags().String("assignee", "", "only this principal (object id, client id or name)")
	list.Flags().String("scope", "", "only assignments that apply at this scope")
	list.Flags().String("role", "", "only this role")

	del := &cobra.Command{
		Use:   "delete --id ID | --role ROLE --assignee ID|NAME --scope SCOPE",
		Short: "Delete a role assignment",
		Long: `Delete a role assignment by id, or by its role, assignee and exact scope. The revocation
takes effect with the next request.`,
		Example: `  coffer role assignment delete --id 3f1c2a6e-0b7d-4a51-9a8e-2f0c5d7e9b14
  coffer role assignment delete --role AcrPush --assignee ci-bot --scope repository/app`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, _ := cmd.Flags().GetString("id")
			role, _ := cmd.Flags().GetString("role")
			assignee, _ := cmd.Flags().GetString("assignee")
			scope, _ := cmd.Flags().GetString("scope")
			if id == "" && (role == "" || assignee == "" || scope == "") {
				return errors.New("give --id, or all of --role, --assignee and --scope")
			}
			if id != "" && (role != "" || assignee != "" || scope != "") {
				return errors.New("give either --id or --role/--assignee/--scope, not both")
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var deleted wire.RoleAssignment
			if id == "" {
				want, err := wire.ParseScope(scope)
				if err != nil {
					return err
				}
				list, err := fetchAssignments(cmd, c, assignee, want, role)
				if err != nil {
					return err
				}
				for _, a := range list {
					if a.Scope == want && strings.EqualFold(a.Role, role) {
						deleted = a
					}
				}
				if deleted.ID == "" {
					return fmt.Errorf("no assignment of %q to %s at %s ('coffer role assignment list --assignee %s' shows theirs)", role, assignee, want, assignee)
				}
			} else if err := c.do(cmd.Context(), "GET", "/coffer/v1/role-assignments/"+url.PathEscape(id), nil, &deleted); err != nil {
				return err
			}
			if err := c.do(cmd.Context(), "DELETE", "/coffer/v1/role-assignments/"+url.PathEscape(deleted.ID), nil, nil); err != nil {
				return err
			}
			return printResult(cmd, map[string]any{"deleted": deleted}, func() Table {
				t := assignmentTable([]wire.RoleAssignment{deleted})
				t.Header[0] = "DELETED ID"
				return t
			})
		},
	}
	del.Flags().String("id", "", "id of the assignment")
	del.Flags().String("role", "", "role of the assignment")
	del.Flags().String("assignee", "", "object id, client id or name of the principal")
	del.Flags().String("scope", "", "exact scope of the assignment")

	asg.AddCommand(create, list, del)
	return asg
}

func listAssignments(cmd *cobra.Command) ([]wire.RoleAssignment, error) {
	c, err := newAPIClient(cmd)
	if err != nil {
		return nil, err
	}
	assignee, _ := cmd.Flags().GetString("assignee")
	scope, _ := cmd.Flags().GetString("scope")
	role, _ := cmd.Flags().GetString("role")
	if scope != "" {
		if _, err := wire.ParseScope(scope); err != nil {
			return nil, err
		}
	}
	return fetchAssignments(cmd, c, assignee, scope, role)
}

func fetchAssignments(cmd *cobra.Command, c *apiClient, assignee, scope, role string) ([]wire.RoleAssignment, error) {
	q := url.Values{}
	for k, v := range map[string]string{"assignee": assignee, "scope": scope, "role": role} {
		if v != "" {
			q.Set(k, v)
		}
	}
	path := "/coffer/v1/role-assignments"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out wire.List[wire.RoleAssignment]
	if err := c.do(cmd.Context(), "GET", path, nil, &out); err != nil {
		return nil, err
	}
	if out.Value == nil {
		out.Value = []wire.RoleAssignment{}
	}
	return out.Value, nil
}

func assignmentTable(list []wire.RoleAssignment) Table {
	t := Table{Header: []string{"ID", "ROLE", "PRINCIPAL", "KIND", "PRINCIPAL ID", "SCOPE"}}
	for _, a := range list {
		t.Rows = append(t.Rows, []string{a.ID, a.Role, a.PrincipalName, a.PrincipalKind, a.PrincipalID, a.Scope})
	}
	return t
}
