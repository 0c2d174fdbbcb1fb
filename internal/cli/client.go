package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/durable"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// credentials are what `coffer login` keeps, in a file of mode 0600.
type credentials struct {
	Server   string `json:"server"`
	CAFile   string `json:"caFile,omitempty"`
	Username string `json:"username,omitempty"`
	// RefreshToken is exchanged for a short-lived management token on each command.
	RefreshToken string `json:"refreshToken,omitempty"`
	// RegistryRefreshToken is the refresh token of the registry audience, that
	// `coffer image …` hands to the registry's token service for docker:// references
	// to Server's host (a management refresh token is refused there).
	RegistryRefreshToken string `json:"registryRefreshToken,omitempty"`
}

// credentialsPath is $COFFER_CONFIG_DIR/credentials.json, else <user config dir>/coffer/credentials.json.
func credentialsPath() (string, error) {
	dir := os.Getenv("COFFER_CONFIG_DIR")
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return "", fmt.Errorf("find the configuration directory (set COFFER_CONFIG_DIR): %w", err)
		}
		dir = filepath.Join(base, "coffer")
	}
	return filepath.Join(dir, "credentials.json"), nil
}

func loadCredentials() (credentials, error) {
	var c credentials
	path, err := credentialsPath()
	if err != nil {
		return c, err
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("read %s: %w (run 'coffer login' again)", path, err)
	}
	return c, nil
}

func saveCredentials(c credentials) error {
	path, err := credentialsPath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	raw, _ := json.MarshalIndent(c, "", "  ")
	return durable.WriteFile(path, raw, 0o600)
}

// apiClient calls the server's management API with a management token.
type apiClient struct {
	base  string
	http  *http.Client
	token string
}

// APIError is an error answered by the server in the {"error":{"code","message"}} shape.
type APIError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	// Inner is the management API's innererror code, which says which refusal of its
	// kind a vault error is (ForbiddenByFirewall, KeyDisabled, …; docs/management-api.md).
	Inner struct {
		Code string `json:"code"`
	} `json:"innererror"`
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("server answered %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// serverSettings resolves the server URL and HTTP client from flags, environment and the
// saved credentials, in that order.
func serverSettings(cmd *cobra.Command, saved credentials) (string, *http.Client, error) {
	server, _ := cmd.Flags().GetString("server")
	if server == "" {
		server = os.Getenv("COFFER_SERVER")
	}
	if server == "" {
		server = saved.Server
	}
	if server == "" {
		return "", nil, errors.New("no server: run 'coffer login https://HOST:PORT' first, or pass --server")
	}
	if !strings.Contains(server, "://") {
		server = "https://" + server
	}
	caFile, _ := cmd.Flags().GetString("ca-file")
	if caFile == "" {
		caFile = os.Getenv("COFFER_CA_FILE")
	}
	if caFile == "" && strings.TrimRight(server, "/") == strings.TrimRight(saved.Server, "/") {
		caFile = saved.CAFile
	}
	client, err := httpClientFor(caFile)
	return strings.TrimRight(server, "/"), client, err
}

func httpClientFor(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Minute}, nil
}

// newAPIClient returns a client holding a fresh management token. Credentials come from
// COFFER_USERNAME/COFFER_PASSWORD, COFFER_CLIENT_ID/COFFER_CLIENT_SECRET (a service
// principal), or the refresh token saved by `coffer login`.
func newAPIClient(cmd *cobra.Command) (*apiClient, error) {
	saved, err := loadCredentials()
	if err != nil {
		return nil, err
	}
	base, hc, err := serverSettings(cmd, saved)
	if err != nil {
		return nil, err
	}
	form := url.Values{"service": {wire.AudienceManagement}}
	switch {
	case os.Getenv("COFFER_USERNAME") != "":
		form.Set("grant_type", "password")
		form.Set("username", os.Getenv("COFFER_USERNAME"))
		form.Set("password", os.Getenv("COFFER_PASSWORD"))
	case os.Getenv("COFFER_CLIENT_ID") != "":
		form.Set("grant_type", "client_credentials")
		form.Set("client_id", os.Getenv("COFFER_CLIENT_ID"))
		form.Set("client_secret", os.Getenv("COFFER_CLIENT_SECRET"))
	case saved.RefreshToken != "" && base == strings.TrimRight(saved.Server, "/"):
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", saved.RefreshToken)
	default:
		return nil, fmt.Errorf("not logged in to %s: run 'coffer login %s'", base, base)
	}
	tok, err := requestToken(cmd.Context(), hc, base, form)
	if err != nil {
		return nil, err
	}
	return &apiClient{base: base, http: hc, token: tok.AccessToken}, nil
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	Token        string `json:"token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
}

func requestToken(ctx context.Context, hc *http.Client, base string, form url.Values) (tokenResponse, error) {
	var tr tokenResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return tr, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return tr, fmt.Errorf("reach %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return tr, decodeAPIError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		return tr, fmt.Errorf("token response: %w", err)
	}
	if tr.AccessToken == "" {
		tr.AccessToken = tr.Token
	}
	return tr, nil
}

func decodeAPIError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var wrapped struct {
		Error            json.RawMessage `json:"error"`
		ErrorDescription string          `json:"error_description"`
		Errors           []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	e := &APIError{Status: resp.StatusCode}
	if json.Unmarshal(body, &wrapped) == nil {
		switch {
		case len(wrapped.Error) > 0 && wrapped.Error[0] == '{':
			json.Unmarshal(wrapped.Error, e)
		case len(wrapped.Error) > 0: // OAuth2 shape: {"error":"invalid_client","error_description":…}
			json.Unmarshal(wrapped.Error, &e.Code)
			e.Message = wrapped.ErrorDescription
		case len(wrapped.Errors) > 0: // OCI shape
			e.Code, e.Message = wrapped.Errors[0].Code, wrapped.Errors[0].Message
		}
	}
	if e.Message == "" && e.Code == "" {
		e.Message = strings.TrimSpace(string(body))
		if e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
	}
	return e
}

// do sends a JSON request to the management API and decodes a JSON answer into out.
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reach %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeAPIError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}
