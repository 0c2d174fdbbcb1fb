package cli

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

func userCommand() *cobra.Command {
	user := &cobra.Command{
		Use:   "user",
		Short: "Manage users (name + password)",
		Long: `Users log in with a name and password: 'coffer login', 'docker login', or HTTP Basic
at the token endpoint. Passwords are stored as argon2id hashes. What a user may do is
decided by role assignments ('coffer role assignment create').`,
		Example: `  coffer user create alice --password-stdin < alice-password.txt
  coffer user list
  coffer user passwd alice
  coffer user delete alice`,
	}
	user.AddCommand(userCreateCommand(), userPasswdCommand(), userListCommand(), userDeleteCommand())
	return user
}

// principalInfo is what the user, sp and identity commands print of a wire.Identity or a
// wire.ManagedIdentity (-o json has always had this shape).
type principalInfo struct {
	ID          string           `json:"id"`
	Kind        string           `json:"kind"`
	Name        string           `json:"name"`
	ClientID    string           `json:"clientId,omitempty"`
	PrincipalID string           `json:"principalId,omitempty"`
	TenantID    string           `json:"tenantId,omitempty"`
	CreatedAt   time.Time        `json:"createdAt"`
	Credentials []credentialInfo `json:"credentials,omitempty"`
}

type credentialInfo struct {
	ID        string    `json:"id"`
	Hint      string    `json:"hint"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

func identityView(in wire.Identity) principalInfo {
	return principalInfo{ID: in.ID, Kind: in.Kind, Name: in.Name, ClientID: in.ClientID, CreatedAt: in.CreatedAt,
		Credentials: wire.MapSlice(in.Credentials, func(c wire.Credential) credentialInfo { return credentialInfo(c) })}
}

func managedIdentityView(in wire.ManagedIdentity) principalInfo {
	v := identityView(in.Identity)
	v.PrincipalID, v.TenantID = in.PrincipalID, in.TenantID
	return v
}

func identityListView(in wire.List[wire.Identity]) []principalInfo {
	return wire.MapSlice(in.Value, identityView)
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func addPasswordFlags(cmd *cobra.Command) {
	cmd.Flags().StringP("password", "p", "", "the password (prefer --password-stdin: a flag is visible to other processes)")
	cmd.Flags().Bool("password-stdin", false, "read the password from standard input")
}

func userCreateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a user",
		Long: `Create a user. Give the password with --password-stdin (or -p); without either, a
random password is generated and shown once.`,
		Example: `  echo 'correct horse battery staple' | coffer user create alice --password-stdin
  coffer user create bob            # prints a generated password once
  coffer role assignment create --role AcrPull --assignee alice --scope /registry`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, generated, err := passwordOrGenerate(cmd)
			if err != nil {
				return err
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var created wire.Identity
			if err := c.do(cmd.Context(), http.MethodPost, "/coffer/v1/users", wire.CreateUserRequest{Name: args[0], Password: pw}, &created); err != nil {
				return err
			}
			out := identityView(created)
			res := struct {
				principalInfo
				Password string `json:"password,omitempty"`
			}{principalInfo: out}
			if generated {
				res.Password = pw
			}
			err = printResult(cmd, res, func() Table {
				t := Table{Header: []string{"NAME", "ID", "CREATED"}, Rows: [][]string{{out.Name, out.ID, ts(out.CreatedAt)}}}
				if generated {
					t.Header = append(t.Header, "PASSWORD")
					t.Rows[0] = append(t.Rows[0], pw)
				}
				return t
			})
			if err == nil && generated {
				fmt.Fprintln(cmd.ErrOrStderr(), "The generated password is shown only this once.")
			}
			return err
		},
	}
	addPasswordFlags(cmd)
	return cmd
}

// passwordOrGenerate reads a password from the flags or standard input, or generates one.
func passwordOrGenerate(cmd *cobra.Command) (string, bool, error) {
	pw, _ := cmd.Flags().GetString("password")
	fromStdin, _ := cmd.Flags().GetBool("password-stdin")
	if pw != "" || fromStdin {
		pw, err := readPassword(cmd, bufio.NewReader(cmd.InOrStdin()), "Password: ")
		return pw, false, err
	}
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", false, err
	}
	return base64.RawURLEncoding.EncodeToString(b), true, nil
}

func userPasswdCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "passwd NAME",
		Short: "Change a user's password (revokes the user's refresh tokens)",
		Long: `Change a user's password. A user changing their own password gives the current one
as well (asked for first, or read from --current-password-file): a management token alone
is not the password. Changing another user's password needs the identity/manage
permission (Owner) and no current password. The user's refresh tokens (saved by 'coffer
login' and 'docker login') stop working.

With --password-stdin and your own name, standard input holds the current password on its
first line and the new one after it.`,
		Example: `  coffer user passwd alice --password-stdin < new-password.txt      # as an Owner, for alice
  printf '%s\n%s\n' "$OLD" "$NEW" | coffer user passwd admin --password-stdin   # your own
  coffer user passwd admin --current-password-file old.txt --password-stdin < new.txt
  coffer user passwd admin          # asks for the current and the new password`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var who wire.Whoami
			if err := c.do(cmd.Context(), http.MethodGet, "/coffer/v1/whoami", nil, &who); err != nil {
				return err
			}
			in := bufio.NewReader(cmd.InOrStdin())
			req := wire.PasswordRequest{}
			if who.Kind == "user" && (who.Name == args[0] || who.ID == args[0]) {
				if req.CurrentPassword, err = currentPassword(cmd, in); err != nil {
					return err
				}
			}
			if req.Password, err = readPassword(cmd, in, "New password: "); err != nil {
				return err
			}
			if err := c.do(cmd.Context(), http.MethodPut, "/coffer/v1/users/"+url.PathEscape(args[0])+"/password", req, nil); err != nil {
				return err
			}
			res := map[string]any{"name": args[0], "passwordChanged": true}
			return printResult(cmd, res, func() Table {
				return Table{Header: []string{"NAME", "RESULT"}, Rows: [][]string{{args[0], "password changed"}}}
			})
		},
	}
	addPasswordFlags(cmd)
	cmd.Flags().String("current-password-file", "", "file holding your current password (when changing your own)")
	return cmd
}

// currentPassword reads the caller's current password: from --current-password-file, or
// asked for (without echo on a terminal; otherwise the first line of standard input).
func currentPassword(cmd *cobra.Command, in *bufio.Reader) (string, error) {
	if f, _ := cmd.Flags().GetString("current-password-file"); f != "" {
		raw, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("read --current-password-file: %w", err)
		}
		if pw := strings.TrimRight(string(raw), "\r\n"); pw != "" {
			return pw, nil
		}
		return "", fmt.Errorf("--current-password-file %s is empty", f)
	}
	if f, ok := cmd.InOrStdin().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(cmd.ErrOrStderr(), "Current password: ")
		raw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", fmt.Errorf("read the current password: %w", err)
		}
		return string(raw), nil
	}
	pw, err := prompt(cmd, in, "Current password: ")
	if err == nil && pw == "" {
		err = errors.New("changing your own password needs your current password: give it on the first line of standard input or with --current-password-file")
	}
	return pw, err
}

func userListCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List users",
		Example: `  coffer user list -o json`,
		Args:    cobra.NoArgs,
		RunE: getRun(fixedPath("/coffer/v1/users"), identityListView, func(list []principalInfo) Table {
			t := Table{Header: []string{"NAME", "ID", "CREATED"}}
			for _, u := range list {
				t.Rows = append(t.Rows, []string{u.Name, u.ID, ts(u.CreatedAt)})
			}
			return t
		}),
	}
}

func userDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Short:   "Delete a user (and revoke its refresh tokens)",
		Example: `  coffer user delete alice`,
		Args:    cobra.ExactArgs(1),
		RunE:    deletePrincipal("/coffer/v1/users/"),
	}
}

// deletePrincipal deletes the principal args[0] names under prefix.
func deletePrincipal(prefix string) func(*cobra.Command, []string) error {
	return deleteRun(func(args []string) string { return prefix + url.PathEscape(args[0]) },
		func(args []string) (any, func() Table, string) {
			return map[string]any{"deleted": args[0]}, func() Table {
				return Table{Header: []string{"DELETED"}, Rows: [][]string{{args[0]}}}
			}, ""
		})
}

// fixedPath is a path that takes nothing from the arguments.
func fixedPath(p string) func([]string) string { return func([]string) string { return p } }
