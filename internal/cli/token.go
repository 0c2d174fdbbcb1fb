package cli

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

func tokenCommand() *cobra.Command {
	tok := &cobra.Command{
		Use:   "token",
		Short: "Repository-scoped tokens for CI systems (registry credentials with a scope map)",
		Long: `A repository token is a registry credential (name + password, usable as docker login
credentials) whose only rights are its scope map: a list of repositories, each with
scope-map actions:

  content/read     pull: manifests, blobs, tag list, referrers
  content/write    push: blob uploads, manifest and tag writes (docker push also needs content/read)
  content/delete   delete manifests, tags and blobs
  metadata/read    read tags and manifests: the same as content/read in Coffer
  content/sign     write content-trust data (notary / docker trust sign); push also needs content/write
  metadata/write   change repository attributes (reserved: no operation needs it yet)

A repository NAME/* covers every repository under NAME/. Roles and access policies never
apply to a token, and it can never use a vault or the management API.`,
	}
	tok.AddCommand(tokenCreateCommand(), tokenListCommand(), tokenShowCommand(), tokenDeleteCommand())
	return tok
}

func tokenCreateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create --name NAME --repository REPO:ACTION[,ACTION...] [--repository ...]",
		Short: "Create a repository token; its password is shown once",
		Example: `  coffer token create --name ci --repository app:content/read,content/write
  coffer token create --name deploy --repository app:content/read --repository team/*:content/read
  echo "$PASSWORD" | docker login localhost:5000 -u ci --password-stdin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, _ := cmd.Flags().GetString("name")
			repos, _ := cmd.Flags().GetStringArray("repository")
			if len(repos) == 0 {
				return errors.New("give at least one --repository REPO:ACTIONS, e.g. --repository app:content/read")
			}
			var scopeMap []wire.ScopeMapEntry
			for _, r := range repos {
				e, err := wire.ParseScopeMapEntry(r)
				if err != nil {
					return err
				}
				scopeMap = append(scopeMap, e)
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.CreateTokenResponse
			if err := c.do(cmd.Context(), "POST", "/coffer/v1/tokens", wire.CreateTokenRequest{Name: name, ScopeMap: scopeMap}, &out); err != nil {
				return err
			}
			err = printResult(cmd, out, func() Table {
				t := tokenTable([]wire.RepositoryToken{out.RepositoryToken})
				t.Header = append(t.Header, "PASSWORD")
				t.Rows[0] = append(t.Rows[0], out.Password)
				return t
			})
			if err == nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "The password is shown only this once: store it now (e.g. as a CI secret).")
			}
			return err
		},
	}
	cmd.Flags().String("name", "", "token name (the user name for docker login)")
	cmd.Flags().StringArray("repository", nil, "REPO:ACTION[,ACTION...] (repeatable); actions: content/read, content/write, content/delete, metadata/read, metadata/write, content/sign")
	cmd.MarkFlagRequired("name")
	return cmd
}

func tokenListCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List repository tokens and their scope maps",
		Example: "  coffer token list\n  coffer token list -o json",
		Args:    cobra.NoArgs,
		RunE: getRun(fixedPath("/coffer/v1/tokens"), func(in wire.List[wire.RepositoryToken]) []wire.RepositoryToken {
			return orEmpty(in.Value)
		}, tokenTable),
	}
}

func tokenShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME",
		Short:   "Show one repository token and its scope map",
		Example: "  coffer token show ci",
		Args:    cobra.ExactArgs(1),
		RunE: getRun(func(args []string) string { return "/coffer/v1/tokens/" + url.PathEscape(args[0]) },
			same[wire.RepositoryToken], func(tok wire.RepositoryToken) Table { return tokenTable([]wire.RepositoryToken{tok}) }),
	}
}

func tokenDeleteCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete --name NAME",
		Short: "Delete a repository token: its password stops working at once",
		Example: `  coffer token delete --name ci
  coffer token delete ci`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, _ := cmd.Flags().GetString("name")
			if len(args) == 1 {
				if name != "" && name != args[0] {
					return fmt.Errorf("two names given: %q and %q", args[0], name)
				}
				name = args[0]
			}
			if name == "" {
				return errors.New("give the token's name: coffer token delete --name NAME")
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), "DELETE", "/coffer/v1/tokens/"+url.PathEscape(name), nil, nil); err != nil {
				return err
			}
			return printResult(cmd, map[string]string{"deleted": name}, func() Table {
				return Table{Header: []string{"DELETED"}, Rows: [][]string{{name}}}
			})
		},
	}
	cmd.Flags().String("name", "", "token name")
	return cmd
}

func tokenTable(list []wire.RepositoryToken) Table {
	t := Table{Header: []string{"NAME", "OBJECT ID", "SCOPE MAP", "CREATED"}}
	for _, tok := range list {
		var parts []string
		for _, e := range tok.ScopeMap {
			parts = append(parts, e.Repository+":"+strings.Join(e.Actions, ","))
		}
		t.Rows = append(t.Rows, []string{tok.Name, tok.ObjectID, strings.Join(parts, " "), tok.CreatedAt.Format("2006-01-02T15:04:05Z")})
	}
	return t
}
