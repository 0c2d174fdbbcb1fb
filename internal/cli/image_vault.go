package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/imagecrypt"
	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// imageKEKs is how `coffer image` reaches the key of a vault: recipient or key. The
// precedence, per vault (docs/image-encryption.md):
//
//  1. AZURE_CLIENT_ID and AZURE_CLIENT_SECRET set: that service principal, through the
//     Azure SDK, for every vault (an explicit credential wins);
//  2. a Coffer credential (COFFER_USERNAME/COFFER_PASSWORD, COFFER_CLIENT_ID/
//     COFFER_CLIENT_SECRET, or the refresh token `coffer login` saved) and the key's vault
//     is a vault of that server: the management API's key operations, as that principal
//     (the vault's access checks and audit trail apply as on its own API);
//  3. otherwise: the Azure SDK with the host's managed identity (IDENTITY_ENDPOINT…).
type imageKEKs struct {
	azure imagecrypt.KEKs
	// explicit: AZURE_CLIENT_ID and AZURE_CLIENT_SECRET are set.
	explicit bool
	// server is the Coffer server's management client (nil: no Coffer credential).
	server *mgmtSession

	mu     sync.Mutex
	vaults map[string]vaultRoute // by vault URL (lower case)
}

// vaultRoute is how one vault is reached.
type vaultRoute struct {
	k    kek.KEK
	hint string // why the Coffer server was not used (for the Azure SDK's errors)
}

func newImageKEKs(cmd *cobra.Command, saved credentials, caFile string) *imageKEKs {
	az := config.AzureFromEnv(os.Getenv)
	k := &imageKEKs{
		azure:    imagecrypt.RemoteKEKs(az.TenantID, az.ClientID, az.ClientSecret, az.AuthorityHost, caFile),
		explicit: az.ClientID != "" && az.ClientSecret != "",
		vaults:   map[string]vaultRoute{},
	}
	if hasCofferCredential(cmd, saved) {
		k.server = &mgmtSession{connect: func(context.Context) (*apiClient, error) { return newAPIClient(cmd) }}
	}
	return k
}

// hasCofferCredential: newAPIClient has a credential to use.
func hasCofferCredential(cmd *cobra.Command, saved credentials) bool {
	if os.Getenv("COFFER_USERNAME") != "" || os.Getenv("COFFER_CLIENT_ID") != "" {
		return true
	}
	if saved.RefreshToken == "" {
		return false
	}
	server, _ := cmd.Flags().GetString("server")
	if server == "" {
		server = os.Getenv("COFFER_SERVER")
	}
	return server == "" || sameURL(server, saved.Server)
}

// KEK implements imagecrypt.KEKs.
func (k *imageKEKs) KEK(ctx context.Context, ident, keyID string) (kek.KEK, error) {
	id, err := kek.ParseKeyID(keyID)
	if err != nil {
		return nil, err
	}
	if k.explicit || k.server == nil {
		return k.azure.KEK(ctx, ident, keyID)
	}
	vaultKey := strings.ToLower(id.Vault)
	k.mu.Lock()
	r, ok := k.vaults[vaultKey]
	k.mu.Unlock()
	if !ok {
		name, why, err := k.server.findVault(ctx, id)
		if err != nil {
			return nil, err
		}
		if name != "" {
			r.k = &mgmtKEK{s: k.server, vault: name}
		} else {
			az, err := k.azure.KEK(ctx, ident, keyID)
			if err != nil {
				return nil, fmt.Errorf("%w (%s)", err, why)
			}
			r = vaultRoute{k: az, hint: why}
		}
		k.mu.Lock()
		k.vaults[vaultKey] = r
		k.mu.Unlock()
	}
	if r.hint != "" {
		return hinted{r.k, r.hint}, nil
	}
	return r.k, nil
}

// hinted adds to the Azure SDK's errors why the Coffer server was not used.
type hinted struct {
	k    kek.KEK
	hint string
}

func (h hinted) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w (%s; the Azure SDK's managed-identity credential was used instead)", err, h.hint)
}

func (h hinted) GetKey(ctx context.Context, keyID string) (kek.KeyInfo, error) {
	info, err := h.k.GetKey(ctx, keyID)
	return info, h.wrap(err)
}

func (h hinted) WrapKey(ctx context.Context, keyID string, secret []byte) (string, []byte, error) {
	kid, w, err := h.k.WrapKey(ctx, keyID, secret)
	return kid, w, h.wrap(err)
}

func (h hinted) UnwrapKey(ctx context.Context, kid string, wrapped []byte) ([]byte, error) {
	out, err := h.k.UnwrapKey(ctx, kid, wrapped)
	return out, h.wrap(err)
}

func (h hinted) UnwrapKeyAlgorithm(ctx context.Context, kid, alg string, wrapped []byte) ([]byte, error) {
	au, ok := h.k.(kek.AlgorithmUnwrapper)
	if !ok {
		return nil, fmt.Errorf("the vault driver cannot unwrap with %s", alg)
	}
	out, err := au.UnwrapKeyAlgorithm(ctx, kid, alg, wrapped)
	return out, h.wrap(err)
}

// mgmtSession is a management API client of the Coffer server, connected on first use and
// reconnected when its token expired.
type mgmtSession struct {
	connect func(ctx context.Context) (*apiClient, error)

	mu sync.Mutex
	c  *apiClient
	me string // the caller's object id ("" until asked)
}

func (s *mgmtSession) client(ctx context.Context, stale *apiClient) (*apiClient, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil && s.c != stale {
		return s.c, nil
	}
	c, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	s.c = c
	return c, nil
}

// do calls the management API, once more with a new token when the first was refused as
// expired.
func (s *mgmtSession) do(ctx context.Context, method, path string, in, out any) error {
	c, err := s.client(ctx, nil)
	if err != nil {
		return err
	}
	err = c.do(ctx, method, path, in, out)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
		if c, err = s.client(ctx, c); err != nil {
			return err
		}
		err = c.do(ctx, method, path, in, out)
	}
	return err
}

// findVault finds the name of id's vault on the server: among the vaults the caller may
// read (vault/read), else among the vaults its key URL or the caller's own role
// assignments name, confirmed by reading the key there (whose id must name the same
// vault). "" and why when the vault is not one of the server's (or not one the caller can
// see).
func (s *mgmtSession) findVault(ctx context.Context, id kek.KeyID) (string, string, error) {
	var vs wire.List[wire.Vault]
	if err := s.do(ctx, http.MethodGet, "/coffer/v1/vaults", nil, &vs); err != nil {
		return "", "", fmt.Errorf("find the vault of %s on the Coffer server: %w", id, err)
	}
	for _, v := range vs.Value {
		if sameURL(v.URL, id.Vault) {
			return v.Name, "", nil
		}
	}
	var candidates []string
	if u, err := url.Parse(id.Vault); err == nil && net.ParseIP(u.Hostname()) == nil {
		if label, _, ok := strings.Cut(u.Hostname(), "."); ok && label != "" {
			candidates = append(candidates, label)
		}
	}
	candidates = append(candidates, s.assignedVaults(ctx)...)
	seen := map[string]bool{}
	for _, name := range candidates {
		if seen[strings.ToLower(name)] {
			continue
		}
		seen[strings.ToLower(name)] = true
		var k wire.Key
		if err := s.do(ctx, http.MethodGet, keyPath(name, id.Name), nil, &k); err != nil {
			continue
		}
		if got, err := kek.ParseKeyID(k.ID); err == nil && sameURL(got.Vault, id.Vault) {
			return name, "", nil
		}
	}
	s.mu.Lock()
	server := ""
	if s.c != nil {
		server = s.c.base
	}
	s.mu.Unlock()
	return "", fmt.Sprintf("%s is not a vault of %s that this identity can see: a vault on a port of its own is found with the vault/read permission (a Reader or Key Vault Reader role) or a role assigned at the vault", id.Vault, server), nil
}

// assignedVaults are the vaults named by the scopes of the caller's own role assignments.
func (s *mgmtSession) assignedVaults(ctx context.Context) []string {
	s.mu.Lock()
	me := s.me
	s.mu.Unlock()
	if me == "" {
		var who wire.Whoami
		if s.do(ctx, http.MethodGet, "/coffer/v1/whoami", nil, &who) != nil {
			return nil
		}
		me = who.ID
		s.mu.Lock()
		s.me = me
		s.mu.Unlock()
	}
	var ras wire.List[wire.RoleAssignment]
	if s.do(ctx, http.MethodGet, "/coffer/v1/role-assignments?assignee="+url.QueryEscape(me), nil, &ras) != nil {
		return nil
	}
	var out []string
	for _, ra := range ras.Value {
		rest, ok := strings.CutPrefix(ra.Scope, "/vaults/")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(rest, "/")
		if name != "" {
			out = append(out, name)
		}
	}
	return out
}

// sameURL compares scheme://host[:port] URLs as a client reaches them.
func sameURL(a, b string) bool {
	norm := func(s string) string {
		u, err := url.Parse(strings.TrimRight(s, "/"))
		if err != nil {
			return strings.ToLower(s)
		}
		host := strings.ToLower(u.Host)
		if u.Port() == "443" && u.Scheme == "https" {
			host = strings.ToLower(u.Hostname())
		}
		return strings.ToLower(u.Scheme) + "://" + host + u.Path
	}
	return norm(a) == norm(b)
}

// mgmtKEK reaches a key of a Coffer vault through the management API's key operations, as
// the caller: the vault checks the key permission and records the call in its audit trail
// as on its own API.
type mgmtKEK struct {
	s     *mgmtSession
	vault string
}

var (
	_ kek.KEK                = (*mgmtKEK)(nil)
	_ kek.AlgorithmUnwrapper = (*mgmtKEK)(nil)
)

func (m *mgmtKEK) GetKey(ctx context.Context, keyID string) (kek.KeyInfo, error) {
	id, err := kek.ParseKeyID(keyID)
	if err != nil {
		return kek.KeyInfo{}, err
	}
	var k wire.Key
	if err := m.s.do(ctx, http.MethodGet, keyPath(m.vault, id.Name)+"?version="+url.QueryEscape(id.Version), nil, &k); err != nil {
		return kek.KeyInfo{}, vaultError("get", keyID, err)
	}
	return kek.KeyInfo{KID: k.ID, Type: k.JWK.Kty, Enabled: k.Attributes.Enabled, Ops: k.JWK.KeyOps, N: k.JWK.N, E: k.JWK.E}, nil
}

// op runs one key operation (wrapkey, unwrapkey) with alg.
func (m *mgmtKEK) op(ctx context.Context, op, keyID, alg string, value []byte) (wire.KeyOpResult, error) {
	var out wire.KeyOpResult
	id, err := kek.ParseKeyID(keyID)
	if err != nil {
		return out, err
	}
	req := wire.KeyOpRequest{Version: id.Version, Alg: alg, Value: value}
	if err := m.s.do(ctx, http.MethodPost, keyPath(m.vault, id.Name)+"/"+op, req, &out); err != nil {
		return out, vaultError(op, keyID, err)
	}
	return out, nil
}

func (m *mgmtKEK) WrapKey(ctx context.Context, keyID string, secret []byte) (string, []byte, error) {
	return kek.WrapWithFallback(func(alg string) (string, []byte, error) {
		out, err := m.op(ctx, "wrapkey", keyID, alg, secret)
		return out.Kid, out.Value, err
	})
}

func (m *mgmtKEK) UnwrapKey(ctx context.Context, kid string, wrapped []byte) ([]byte, error) {
	alg, raw := kek.RecordedAlgorithm(wrapped)
	return m.UnwrapKeyAlgorithm(ctx, kid, alg, raw)
}

func (m *mgmtKEK) UnwrapKeyAlgorithm(ctx context.Context, kid, alg string, wrapped []byte) ([]byte, error) {
	out, err := m.op(ctx, "unwrapkey", kid, alg, wrapped)
	return out.Value, err
}

// vaultError classifies a management API error as the kek drivers do.
func vaultError(op, keyID string, err error) error {
	var ae *APIError
	if !errors.As(err, &ae) {
		return &kek.Error{Op: op, KeyID: keyID, Kind: kek.ErrUnavailable, Detail: err.Error()}
	}
	kind := kek.ErrUnavailable
	switch inner := ae.Inner.Code; {
	case inner == "ForbiddenByFirewall":
		kind = kek.ErrNetworkDenied
	case inner == "KeyDisabled":
		kind = kek.ErrDisabled
	case inner == "AlgorithmNotSupportedByHSM":
		kind = kek.ErrAlgorithmUnsupported
	case ae.Status == http.StatusForbidden || ae.Status == http.StatusUnauthorized:
		kind = kek.ErrForbidden
	case ae.Status == http.StatusNotFound:
		kind = kek.ErrNotFound
	case ae.Status == http.StatusBadRequest:
		kind = kek.ErrInvalid
	}
	return &kek.Error{Op: op, KeyID: keyID, Kind: kind, Detail: ae.Message}
}
