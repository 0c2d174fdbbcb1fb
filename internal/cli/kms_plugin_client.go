package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/kmsplugin"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// pluginServer is the plugin's client of the Coffer server: it fetches the cluster's settings and
// reports Status (a Source), and wraps and unwraps through the server when the settings say
// so (PMK, or keyVaultNetworkAccess Private). It authenticates as the plugin's service
// principal with the OAuth2 client-credentials grant, or as a managed identity through
// Cred (the Azure SDK's ManagedIdentityCredential, which asks IDENTITY_ENDPOINT).
type pluginServer struct {
	Server       string // https://HOST:PORT
	Cluster      string
	ClientID     string
	ClientSecret string
	// Cred, when set, gives the management tokens instead of the client secret (a managed
	// identity; ClientID is then the user-assigned identity's client id, or empty for the
	// system-assigned one).
	Cred azcore.TokenCredential
	HTTP *http.Client

	mu      sync.Mutex
	token   string
	expires time.Time
	// coffer holds the keys (lower-case versionless ids) of the last settings fetched that
	// are reached through Coffer (a map[string]bool).
	coffer atomic.Value
}

var _ kmsplugin.Source = (*pluginServer)(nil)

// Settings fetches the cluster's settings with the plugin's identity.
func (c *pluginServer) Settings(ctx context.Context) (kmsplugin.Settings, error) {
	var s wire.KMSPluginSettings
	if err := c.do(ctx, http.MethodGet, c.path("/plugin"), nil, &s); err != nil {
		return kmsplugin.Settings{}, err
	}
	through := map[string]bool{}
	for _, k := range s.ThroughCoffer {
		if id, err := kek.ParseKeyID(k); err == nil {
			through[strings.ToLower(id.Versionless())] = true
		}
	}
	c.coffer.Store(through)
	return kmsplugin.Settings{WriteKey: s.WriteKey, DecryptKeys: s.DecryptKeys}, nil
}

// ThroughCoffer tells whether the last settings say keyID is reached through Coffer.
func (c *pluginServer) ThroughCoffer(keyID string) bool {
	through, _ := c.coffer.Load().(map[string]bool)
	id, err := kek.ParseKeyID(keyID)
	return err == nil && through[strings.ToLower(id.Versionless())]
}

// Report sends the plugin's last Status.
func (c *pluginServer) Report(ctx context.Context, r kmsplugin.Report) error {
	return c.do(ctx, http.MethodPut, c.path("/plugin/status"), wire.KMSPluginStatus{KeyID: r.KeyID, Healthz: r.Healthz, Error: r.Error, CheckedAt: r.CheckedAt}, nil)
}

func (c *pluginServer) path(p string) string {
	return "/coffer/v1/kms/clusters/" + url.PathEscape(c.Cluster) + p
}

// GetKey, WrapKey and UnwrapKey make pluginServer a kek.KEK reached through the server.
func (c *pluginServer) GetKey(ctx context.Context, keyID string) (kek.KeyInfo, error) {
	var k wire.KMSKeyInfo
	if err := c.keyCall(ctx, "get", keyID, http.MethodGet, c.path("/plugin/key?keyId="+url.QueryEscape(keyID)), nil, &k); err != nil {
		return kek.KeyInfo{}, err
	}
	return kek.KeyInfo{KID: k.KID, Type: k.Kty, Enabled: k.Enabled, Ops: k.KeyOps}, nil
}

func (c *pluginServer) WrapKey(ctx context.Context, keyID string, secret []byte) (string, []byte, error) {
	return c.crypt(ctx, "wrapKey", "/plugin/wrapkey", keyID, secret)
}

func (c *pluginServer) UnwrapKey(ctx context.Context, kid string, wrapped []byte) ([]byte, error) {
	_, out, err := c.crypt(ctx, "unwrapKey", "/plugin/unwrapkey", kid, wrapped)
	return out, err
}

func (c *pluginServer) crypt(ctx context.Context, op, p, keyID string, in []byte) (string, []byte, error) {
	var res wire.KMSWrapResponse
	req := wire.KMSWrapRequest{KeyID: keyID, Value: base64.RawURLEncoding.EncodeToString(in)}
	if err := c.keyCall(ctx, op, keyID, http.MethodPost, c.path(p), req, &res); err != nil {
		return "", nil, err
	}
	out, err := base64.RawURLEncoding.DecodeString(res.Value)
	if err != nil {
		return "", nil, &kek.Error{Op: op, KeyID: keyID, Kind: kek.ErrInvalid, Detail: "the server's answer is not base64url"}
	}
	return res.KID, out, nil
}

// keyCall maps the server's error codes back to kek's sentinel errors.
func (c *pluginServer) keyCall(ctx context.Context, op, keyID, method, p string, in, out any) error {
	err := c.do(ctx, method, p, in, out)
	var ae *APIError
	if err == nil {
		return nil
	}
	if !errors.As(err, &ae) {
		return &kek.Error{Op: op, KeyID: keyID, Kind: kek.ErrUnavailable, Detail: err.Error()}
	}
	kind := kek.ErrUnavailable
	switch ae.Code {
	case "KeyForbidden", "Forbidden":
		kind = kek.ErrForbidden
	case "KeyNetworkDenied":
		kind = kek.ErrNetworkDenied
	case "KeyNotFound", "NotFound":
		kind = kek.ErrNotFound
	case "KeyDisabled":
		kind = kek.ErrDisabled
	case "KeyInvalid", "BadParameter":
		kind = kek.ErrInvalid
	}
	return &kek.Error{Op: op, KeyID: keyID, Kind: kind, Detail: ae.Message}
}

func (c *pluginServer) do(ctx context.Context, method, p string, in, out any) error {
	tok, err := c.bearer(ctx)
	if err != nil {
		return err
	}
	err = (&apiClient{base: strings.TrimSuffix(c.Server, "/"), http: c.HTTP, token: tok}).do(ctx, method, p, in, out)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
		c.mu.Lock()
		c.token = ""
		c.mu.Unlock()
	}
	return err
}

// bearer returns a management token for the plugin's identity, renewed a minute before it
// expires.
func (c *pluginServer) bearer(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && time.Now().Before(c.expires) {
		return c.token, nil
	}
	if c.Cred != nil {
		tok, err := c.Cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{wire.AudienceManagement + "/.default"}})
		if err != nil {
			return "", fmt.Errorf("the plugin's managed identity %s could not get a token from its managed-identity endpoint (IDENTITY_ENDPOINT, IDENTITY_HEADER): %w", managedName(c.ClientID), err)
		}
		c.token, c.expires = tok.Token, tok.ExpiresOn.Add(-time.Minute)
		return c.token, nil
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ClientID}, "client_secret": {c.ClientSecret}, "service": {wire.AudienceManagement}}
	tok, err := requestToken(ctx, c.HTTP, strings.TrimSuffix(c.Server, "/"), form)
	if err != nil {
		return "", fmt.Errorf("the plugin's identity %s could not get a token from %s (check its client id and secret): %w", c.ClientID, c.Server, err)
	}
	c.token = tok.AccessToken
	life := max(time.Duration(tok.ExpiresIn)*time.Second, 2*time.Minute)
	c.expires = time.Now().Add(life - time.Minute)
	return c.token, nil
}

// remoteKEKs gives the REST driver for a key (kek/resolve's NewRemote, with the plugin's
// identity).
type remoteKEKs interface {
	KEK(ctx context.Context, ident, keyID string) (kek.KEK, error)
}

// pluginRouter sends every key call through Coffer when the settings say so (PMK, Private) and to
// the vault directly otherwise.
type pluginRouter struct {
	Coffer   *pluginServer // nil: always direct
	Remote   remoteKEKs
	Identity string
}

// KEK implements KEKs.
func (r pluginRouter) KEK(ctx context.Context, keyID string) (kek.KEK, error) {
	if r.Coffer != nil && r.Coffer.ThroughCoffer(keyID) {
		return r.Coffer, nil
	}
	if r.Remote == nil {
		return nil, errors.New("no direct route to the vault is configured")
	}
	return r.Remote.KEK(ctx, r.Identity, keyID)
}

// managedName names a managed identity in messages: its client id, or system-assigned.
func managedName(clientID string) string {
	if clientID == "" {
		return "(system-assigned)"
	}
	return clientID
}
