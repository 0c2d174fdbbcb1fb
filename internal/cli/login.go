package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// defaultServer is the server `coffer login` uses when none is given: `coffer serve`'s
// default listener.
const defaultServer = "https://localhost:5000"

// defaultCAFile is the CA `coffer serve` generates in its default data directory.
func defaultCAFile() string { return filepath.Join("coffer-data", "tls", "ca.pem") }

// loginResult is what `coffer login` prints.
type loginResult struct {
	Server   string `json:"server"`
	Username string `json:"username"`
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	TenantID string `json:"tenantId"`
	// Registry says whether a registry credential was saved too (for `coffer image`).
	Registry bool `json:"registryCredential"`
}

func loginCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "login [SERVER]",
		Short: "Log in to a Coffer server and keep a refresh token for the other commands",
		Long: `Log in to a Coffer server with a user name and password (or a service principal's
client id and secret, or a repository token's name and password).

The password is never stored: the server answers with a refresh token, kept in
$COFFER_CONFIG_DIR/credentials.json (default: your user configuration directory,
coffer/credentials.json, mode 0600), that every other command exchanges for a
short-lived management token. A second refresh token, for the registry only, is kept
beside it for 'coffer image …' on docker:// references to this server. 'coffer logout'
revokes both. Changing the password also revokes them.

SERVER defaults to ` + defaultServer + `. When --ca-file is not given and ./` + defaultCAFile() + `
exists (the CA that 'coffer serve' generated in this directory), it is trusted.`,
		Example: `  # after 'coffer serve' in this directory
  coffer login -u admin --password-stdin < coffer-data/initial-admin-password

  # another server, with its CA
  coffer login https://coffer.example:5000 -u alice --ca-file ca.pem`,
		Args: cobra.MaximumNArgs(1),
		RunE: runLogin,
	}
	cmd.Flags().StringP("username", "u", "", "user name (or service principal client id, or repository token name)")
	cmd.Flags().StringP("password", "p", "", "password (prefer --password-stdin: a flag is visible to other processes)")
	cmd.Flags().Bool("password-stdin", false, "read the password from standard input")
	return cmd
}

func runLogin(cmd *cobra.Command, args []string) error {
	server := ""
	if len(args) == 1 {
		server = args[0]
	}
	if server == "" {
		server, _ = cmd.Flags().GetString("server")
	}
	if server == "" {
		server = os.Getenv("COFFER_SERVER")
	}
	if server == "" {
		server = defaultServer
	}
	if !strings.Contains(server, "://") {
		server = "https://" + server
	}
	server = strings.TrimRight(server, "/")
	caFile, _ := cmd.Flags().GetString("ca-file")
	if caFile == "" {
		caFile = os.Getenv("COFFER_CA_FILE")
	}
	if caFile == "" {
		if _, err := os.Stat(defaultCAFile()); err == nil {
			caFile = defaultCAFile()
		}
	}
	if caFile != "" {
		abs, err := filepath.Abs(caFile)
		if err != nil {
			return err
		}
		caFile = abs
	}
	hc, err := httpClientFor(caFile)
	if err != nil {
		return err
	}

	in := bufio.NewReader(cmd.InOrStdin())
	username, _ := cmd.Flags().GetString("username")
	if username == "" {
		if username, err = prompt(cmd, in, "Username: "); err != nil {
			return err
		}
	}
	password, err := readPassword(cmd, in, "Password: ")
	if err != nil {
		return err
	}
	form := url.Values{
		"grant_type":  {"password"},
		"username":    {username},
		"password":    {password},
		"service":     {wire.AudienceManagement},
		"client_id":   {"coffer-cli"},
		"access_type": {"offline"},
	}
	tok, err := requestToken(cmd.Context(), hc, server, form)
	if err != nil {
		return fmt.Errorf("log in to %s: %w", server, err)
	}
	if tok.RefreshToken == "" {
		return fmt.Errorf("log in to %s: the server returned no refresh token", server)
	}
	c := &apiClient{base: server, http: hc, token: tok.AccessToken}
	var who wire.Whoami
	if err := c.do(cmd.Context(), http.MethodGet, "/coffer/v1/whoami", nil, &who); err != nil {
		return fmt.Errorf("log in to %s: %w", server, err)
	}
	// A second grant for the registry audience: refresh tokens are bound to their
	// audience, and `coffer image …` needs one the registry's token service accepts.
	form.Set("service", wire.AudienceRegistry)
	regTok, err := requestToken(cmd.Context(), hc, server, form)
	registryRefresh := ""
	if err != nil || regTok.RefreshToken == "" {
		if err == nil {
			err = errors.New("the server returned no refresh token")
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: no registry credential saved (coffer image will need --creds): %v\n", err)
	} else {
		registryRefresh = regTok.RefreshToken
	}
	if err := saveCredentials(credentials{Server: server, CAFile: caFile, Username: username, RefreshToken: tok.RefreshToken, RegistryRefreshToken: registryRefresh}); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	res := loginResult{Server: server, Username: who.Name, ID: who.ID, Kind: who.Kind, TenantID: who.TenantID, Registry: registryRefresh != ""}
	return printResult(cmd, res, func() Table {
		return Table{Header: []string{"SERVER", "LOGGED IN AS", "KIND", "ID"}, Rows: [][]string{{server, who.Name, who.Kind, who.ID}}}
	})
}

func logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Revoke the saved refresh token and forget the credentials",
		Long: `Revoke the refresh token 'coffer login' saved (the server forgets it) and delete
the saved credentials file. Short-lived access tokens already issued expire on their own.`,
		Example: `  coffer logout`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			saved, err := loadCredentials()
			if err != nil {
				return err
			}
			path, err := credentialsPath()
			if err != nil {
				return err
			}
			revoked := false
			if saved.RefreshToken != "" && saved.Server != "" {
				if hc, err := httpClientFor(saved.CAFile); err == nil {
					revoked = revokeRefreshToken(cmd, hc, saved.Server, saved.RefreshToken) == nil
					if saved.RegistryRefreshToken != "" {
						revoked = revokeRefreshToken(cmd, hc, saved.Server, saved.RegistryRefreshToken) == nil && revoked
					}
				}
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("delete %s: %w", path, err)
			}
			res := map[string]any{"server": saved.Server, "loggedOut": true, "refreshTokenRevoked": revoked}
			return printResult(cmd, res, func() Table {
				msg := "credentials deleted"
				if revoked {
					msg = "refresh token revoked, credentials deleted"
				}
				return Table{Header: []string{"SERVER", "RESULT"}, Rows: [][]string{{saved.Server, msg}}}
			})
		},
	}
}

func revokeRefreshToken(cmd *cobra.Command, hc *http.Client, server, refresh string) error {
	form := url.Values{"token": {refresh}, "token_type_hint": {"refresh_token"}}
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, server+"/oauth2/revoke", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeAPIError(resp)
	}
	return nil
}

// prompt asks for one line on standard input.
func prompt(cmd *cobra.Command, in *bufio.Reader, label string) (string, error) {
	fmt.Fprint(cmd.ErrOrStderr(), label)
	line, err := in.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("read %s: %w", strings.TrimSuffix(strings.TrimSpace(label), ":"), err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// readPassword takes the password from -p, from standard input with --password-stdin,
// or asks for it (without echo on a terminal).
func readPassword(cmd *cobra.Command, in *bufio.Reader, label string) (string, error) {
	if pw, _ := cmd.Flags().GetString("password"); pw != "" {
		return pw, nil
	}
	if fromStdin, _ := cmd.Flags().GetBool("password-stdin"); fromStdin {
		raw, err := io.ReadAll(io.LimitReader(in, 4096))
		if err != nil {
			return "", fmt.Errorf("read the password from standard input: %w", err)
		}
		pw := strings.TrimRight(string(raw), "\r\n")
		if pw == "" {
			return "", errors.New("standard input held no password")
		}
		return pw, nil
	}
	if f, ok := cmd.InOrStdin().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(cmd.ErrOrStderr(), label)
		raw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		return string(raw), nil
	}
	pw, err := prompt(cmd, in, label)
	if err == nil && pw == "" {
		err = errors.New("no password given: use --password-stdin or -p")
	}
	return pw, err
}
