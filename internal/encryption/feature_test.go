// These tests run encryption at rest end to end, in a real Coffer server (servertest).
package encryption_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

const marker = "COFFER-E2E-PLAINTEXT-MARKER-41c9"

// markedImage is an image whose layers and config carry marker.
func markedImage(t *testing.T, tag string) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for i := range 2 {
		content := bytes.Repeat([]byte(fmt.Sprintf("%s layer %d of %s\n", marker, i, tag)), 4000+i)
		var err error
		img, err = mutate.AppendLayers(img, static.NewLayer(content, types.OCIUncompressedLayer))
		if err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf.Config.Labels = map[string]string{"note": marker}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

type registryClient struct {
	t    *testing.T
	e    *vaulttest.Env
	host string
	opts []remote.Option
}

func newRegistryClient(t *testing.T, e *vaulttest.Env) *registryClient {
	return &registryClient{t: t, e: e, host: e.Inst.Addr, opts: []remote.Option{
		remote.WithAuth(&authn.Basic{Username: "admin", Password: e.Inst.AdminPassword}),
		remote.WithTransport(e.Inst.Client.Transport),
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
	}}
}

func (c *registryClient) ref(s string) name.Reference {
	r, err := name.ParseReference(c.host + "/" + s)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

func (c *registryClient) push(repo string, img v1.Image) error {
	return remote.Write(c.ref(repo), img, c.opts...)
}

// pull reads every byte of the image and checks every digest.
func (c *registryClient) pull(repo string) error {
	img, err := remote.Image(c.ref(repo), c.opts...)
	if err != nil {
		return err
	}
	if _, err := img.ConfigFile(); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		r, err := l.Compressed() // verifies the digest at the end
		if err != nil {
			return err
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			return err
		}
		if !bytes.Contains(b, []byte(marker)) {
			return fmt.Errorf("layer content lost its marker")
		}
	}
	return nil
}

// grepTree returns the files under dir that contain s.
func grepTree(t *testing.T, dir, s string) (found []string, files int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(s)) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found, files
}

// TestEncryptedAtRest pushes an image whose layers and config carry a marker, leaves an
// upload session open with the marker in its last, partial chunk, and greps every file of
// the data directory: the marker is nowhere, and the image pulls back intact.
func TestEncryptedAtRest(t *testing.T) {
	e := vaulttest.Start(t, nil)
	c := newRegistryClient(t, e)
	if err := c.push("secret/app:v1", markedImage(t, "v1")); err != nil {
		t.Fatal(err)
	}
	// An upload in progress: one chunk, ending in the marker, never completed.
	repo, _ := name.NewRepository(c.host + "/secret/app")
	tr, err := transport.NewWithContext(context.Background(), repo.Registry,
		&authn.Basic{Username: "admin", Password: e.Inst.AdminPassword}, e.Inst.Client.Transport,
		[]string{repo.Scope(transport.PushScope)})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: tr}
	resp, err := hc.Post(e.Inst.URL+"/v2/secret/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %d", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = e.Inst.URL + loc
	}
	// 99976 + 32 bytes: the marker is in the last, partial 64-byte block of SHA-256, which a
	// saved hash state keeps as it is.
	chunk := append(bytes.Repeat([]byte("x"), 99_976), marker...)
	req, _ := http.NewRequest(http.MethodPatch, loc, bytes.NewReader(chunk))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("upload chunk: %d", resp.StatusCode)
	}

	found, files := grepTree(t, e.Inst.DataDir, marker)
	if len(found) > 0 {
		t.Fatalf("plaintext marker found in %v", found)
	}
	if files < 5 {
		t.Fatalf("only %d files under the data directory: the test looked at too little", files)
	}
	if err := c.pull("secret/app:v1"); err != nil {
		t.Fatalf("pull: %v", err)
	}
	var st struct {
		Status             string         `json:"status"`
		KeySource          string         `json:"keySource"`
		KeyAccessible      bool           `json:"keyAccessible"`
		KeyVaultProperties map[string]any `json:"keyVaultProperties"`
	}
	e.MustDo(t, "GET", "/coffer/v1/registry/encryption", nil, &st)
	if st.KeySource != "platform" || !st.KeyAccessible || st.KeyVaultProperties["keyRotationEnabled"] != true ||
		!strings.Contains(fmt.Sprint(st.KeyVaultProperties["versionedKeyIdentifier"]), "/keys/registry-encryption/") {
		t.Fatalf("encryption show = %+v", st)
	}
}

// adminID is the administrator's object id.
func adminID(t *testing.T, e *vaulttest.Env) string {
	t.Helper()
	var who struct {
		ID string `json:"id"`
	}
	e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	return who.ID
}

// TestRevocationAndRecovery removes the registry identity's access to its key: pushes and
// pulls fail within the key access check interval with an error naming the cause; when the
// access policy comes back, every earlier image pulls intact, with no restart.
func TestRevocationAndRecovery(t *testing.T) {
	const interval = 2 * time.Second
	e := vaulttest.Start(t, func(c *config.Server) { c.Encryption.KeyAccessCheckInterval = interval })
	c := newRegistryClient(t, e)
	for _, tag := range []string{"v1", "v2"} {
		if err := c.push("team/app:"+tag, markedImage(t, tag)); err != nil {
			t.Fatal(err)
		}
	}
	sys := e.SystemIdentity(t)
	policy := "/coffer/v1/vaults/coffer-platform/access-policies/" + sys
	e.MustDo(t, "DELETE", policy, nil, nil)

	took := vaulttest.Eventually(t, interval+3*time.Second, "pull refused after revocation", func() error {
		err := c.pull("team/app:v1")
		if err == nil {
			return fmt.Errorf("pull still works")
		}
		if !strings.Contains(err.Error(), "cannot use") || !strings.Contains(err.Error(), "access") {
			return fmt.Errorf("pull failed without naming the cause: %v", err)
		}
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusForbidden || len(terr.Errors) == 0 || terr.Errors[0].Code != transport.DeniedErrorCode {
			return fmt.Errorf("pull after revocation must be 403 DENIED (content kept, access refused): %v", err)
		}
		return nil
	})
	t.Logf("reads refused %s after the access policy was removed (interval %s)", took.Round(10*time.Millisecond), interval)
	if err := c.push("team/app:v3", markedImage(t, "v3")); err == nil || !strings.Contains(err.Error(), "encrypted under key") {
		t.Fatalf("push after revocation: %v", err)
	}
	var st struct {
		KeyAccessible  bool   `json:"keyAccessible"`
		KeyAccessError string `json:"keyAccessError"`
	}
	e.MustDo(t, "GET", "/coffer/v1/registry/encryption", nil, &st)
	if st.KeyAccessible || !strings.Contains(st.KeyAccessError, "denied") {
		t.Fatalf("show after revocation = %+v", st)
	}

	// Operators see it on /metrics: the key is not accessible and a check was denied.
	if m := scrape(t, e); !strings.Contains(m, "\ncoffer_encryption_key_accessible 0\n") ||
		!regexp.MustCompile(`coffer_encryption_key_checks_total\{result="denied"\} [1-9]`).MatchString(m) {
		t.Fatalf("/metrics after revocation does not show the key inaccessible and a denied check:\n%s", grepLines(m, "coffer_encryption_key"))
	}

	e.SetPolicy(t, "coffer-platform", sys, "get", "wrapKey", "unwrapKey")
	vaulttest.Eventually(t, interval+3*time.Second, "pull after access restored", func() error { return c.pull("team/app:v1") })
	if m := scrape(t, e); !strings.Contains(m, "\ncoffer_encryption_key_accessible 1\n") ||
		!regexp.MustCompile(`coffer_encryption_key_checks_total\{result="ok"\} [1-9]`).MatchString(m) {
		t.Fatalf("/metrics after recovery does not show the key accessible and an ok check:\n%s", grepLines(m, "coffer_encryption_key"))
	}
	for _, tag := range []string{"v1", "v2"} {
		if err := c.pull("team/app:" + tag); err != nil {
			t.Fatalf("pull %s after recovery: %v", tag, err)
		}
	}
	if err := c.push("team/app:v3", markedImage(t, "v3")); err != nil {
		t.Fatalf("push after recovery: %v", err)
	}
	// The vault's audit trail shows the registry identity's denied and allowed unwraps.
	var audit struct {
		Value []map[string]any `json:"value"`
	}
	e.MustDo(t, "GET", "/coffer/v1/audit?vault=coffer-platform", nil, &audit)
	denied, allowed := 0, 0
	for _, r := range audit.Value {
		if fmt.Sprint(r["principalId"]) == sys && strings.Contains(fmt.Sprint(r["operation"]), "nwrap") {
			if fmt.Sprint(r["result"]) == "denied" {
				denied++
			} else {
				allowed++
			}
		}
	}
	if denied == 0 || allowed == 0 {
		t.Fatalf("audit trail: %d denied and %d allowed unwraps by the registry identity; records: %v", denied, allowed, audit.Value)
	}
}

// scrape reads the server's /metrics.
func scrape(t *testing.T, e *vaulttest.Env) string {
	t.Helper()
	resp, err := e.Inst.Client.Get(e.Inst.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// grepLines keeps the lines of text that start with prefix.
func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// kvProcess is a `coffer serve` child process: the remote key vault.
type kvProcess struct {
	url, caFile, tenant, token string
	client                     *http.Client
}

func startKVProcess(t *testing.T) *kvProcess {
	t.Helper()
	dataDir := t.TempDir()
	proc := servertest.StartProcess(t, t.TempDir(), nil, "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--log-level", "warn")
	t.Cleanup(func() { proc.Cmd.Process.Signal(syscall.SIGTERM); proc.Wait() })
	p := &kvProcess{url: proc.URL, caFile: filepath.Join(dataDir, "tls", "ca.pem")}
	p.client = servertest.ClientTrusting(t, p.caFile)
	pw, err := os.ReadFile(filepath.Join(dataDir, "initial-admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {strings.TrimSpace(string(pw))}, "service": {"coffer-management"}}
	resp, err := p.client.PostForm(p.url+"/oauth2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if tok.AccessToken == "" {
		t.Fatalf("admin token from the key vault process: %d", resp.StatusCode)
	}
	p.token = tok.AccessToken
	var who struct {
		ID       string `json:"id"`
		TenantID string `json:"tenantId"`
	}
	p.do(t, "GET", "/coffer/v1/whoami", nil, &who)
	p.tenant = who.TenantID
	return p
}

// do calls the process's management API as its administrator.
func (p *kvProcess) do(t *testing.T, method, path string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		raw, _ := json.Marshal(in)
		body = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, p.url+path, body)
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRemoteVaultKeyWithAutomaticRotation keeps the customer-managed key in a second Coffer
// process (a child `coffer serve`), reached over HTTPS with a service principal's client
// credentials, with a versionless key id: a new key version created there is picked up.
func TestRemoteVaultKeyWithAutomaticRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the coffer binary")
	}
	kv := startKVProcess(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var v struct {
		VaultURI string `json:"vaultUri"`
	}
	kv.do(t, "POST", "/coffer/v1/vaults", map[string]any{"name": "teamkeys", "port": port}, &v)
	var who struct {
		ID string `json:"id"`
	}
	kv.do(t, "GET", "/coffer/v1/whoami", nil, &who)
	kv.do(t, "PUT", "/coffer/v1/vaults/teamkeys/access-policies/"+who.ID, map[string]any{"keyPermissions": []string{"create", "get", "rotate"}}, nil)
	kv.do(t, "POST", "/coffer/v1/vaults/teamkeys/keys/registry-cmk/create", map[string]any{"kty": "RSA", "size": 2048}, nil)
	var sp struct {
		ServicePrincipal struct {
			ID string `json:"id"`
		} `json:"servicePrincipal"`
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}
	kv.do(t, "POST", "/coffer/v1/servicePrincipals", map[string]any{"name": "registry-kek"}, &sp)
	kv.do(t, "PUT", "/coffer/v1/vaults/teamkeys/access-policies/"+sp.ServicePrincipal.ID, map[string]any{"keyPermissions": []string{"get", "wrapKey", "unwrapKey"}}, nil)

	keyID := v.VaultURI + "/keys/registry-cmk"
	reg := vaulttest.Start(t, func(c *config.Server) {
		// What `coffer serve` reads from AZURE_TENANT_ID, AZURE_CLIENT_ID,
		// AZURE_CLIENT_SECRET and AZURE_AUTHORITY_HOST (config.Load).
		c.Azure = config.Azure{TenantID: kv.tenant, ClientID: sp.ClientID, ClientSecret: sp.ClientSecret, AuthorityHost: kv.url + "/"}
		c.Encryption.KeyID = keyID
		c.Encryption.Identity = sp.ClientID
		c.Encryption.VaultCAFile = kv.caFile
		c.Encryption.KeyRotationCheckInterval = time.Second
	})
	c := newRegistryClient(t, reg)
	if err := c.push("remote/app:v1", markedImage(t, "v1")); err != nil {
		t.Fatal(err)
	}
	type show struct {
		Status             string `json:"status"`
		KeyAccessible      bool   `json:"keyAccessible"`
		KeyVaultProperties struct {
			Identity               string `json:"identity"`
			KeyIdentifier          string `json:"keyIdentifier"`
			VersionedKeyIdentifier string `json:"versionedKeyIdentifier"`
			KeyRotationEnabled     bool   `json:"keyRotationEnabled"`
		} `json:"keyVaultProperties"`
	}
	var before show
	reg.MustDo(t, "GET", "/coffer/v1/registry/encryption", nil, &before)
	if before.Status != "enabled" || !before.KeyAccessible || before.KeyVaultProperties.KeyIdentifier != keyID ||
		!before.KeyVaultProperties.KeyRotationEnabled || !strings.HasPrefix(before.KeyVaultProperties.VersionedKeyIdentifier, keyID+"/") {
		t.Fatalf("show = %+v", before)
	}

	var rotated struct {
		Key struct {
			Kid string `json:"kid"`
		} `json:"key"`
	}
	kv.do(t, "POST", "/coffer/v1/vaults/teamkeys/keys/registry-cmk/rotate", nil, &rotated)
	newVersion := rotated.Key.Kid[strings.LastIndex(rotated.Key.Kid, "/"):]
	if rotated.Key.Kid == "" || strings.HasSuffix(before.KeyVaultProperties.VersionedKeyIdentifier, newVersion) {
		t.Fatalf("rotation in the key vault process gave %q", rotated.Key.Kid)
	}
	vaulttest.Eventually(t, 10*time.Second, "automatic rotation to the new version", func() error {
		var now show
		reg.MustDo(t, "GET", "/coffer/v1/registry/encryption", nil, &now)
		if !strings.HasSuffix(now.KeyVaultProperties.VersionedKeyIdentifier, newVersion) {
			return fmt.Errorf("on %s, want version %s", now.KeyVaultProperties.VersionedKeyIdentifier, newVersion)
		}
		return nil
	})
	if err := c.pull("remote/app:v1"); err != nil {
		t.Fatalf("pull after rotation: %v", err)
	}
	if err := c.push("remote/app:v2", markedImage(t, "v2")); err != nil {
		t.Fatalf("push after rotation: %v", err)
	}
	// The key vault process's audit trail shows the registry's wraps under its identity.
	var audit struct {
		Value []map[string]any `json:"value"`
	}
	kv.do(t, "GET", "/coffer/v1/audit?vault=teamkeys&identity="+sp.ServicePrincipal.ID+"&limit=1000", nil, &audit)
	wraps := 0
	for _, r := range audit.Value {
		if strings.Contains(fmt.Sprint(r["operation"]), "rapKey") && fmt.Sprint(r["result"]) == "success" {
			wraps++
		}
	}
	if wraps < 2 {
		t.Fatalf("the key vault's audit trail shows %d wrapKey calls by the registry's identity: %v", wraps, audit.Value)
	}
}

// TestEncryptionCommandsAndGuards: enable with an EC key is refused naming the type;
// enable with an RSA key and a managed identity works once; disable is refused; the
// identity in use cannot be deleted until the key is rotated to another identity.
func TestEncryptionCommandsAndGuards(t *testing.T) {
	e := vaulttest.Start(t, func(c *config.Server) { c.Encryption.KeyAccessCheckInterval = 5 * time.Second })
	e.CreateVault(t, "team", nil)
	e.SetPolicy(t, "team", adminID(t, e), "create", "get")
	e.MustDo(t, "POST", "/coffer/v1/vaults/team/keys/ec/create", map[string]any{"kty": "EC", "curve": "P-256"}, nil)
	e.MustDo(t, "POST", "/coffer/v1/vaults/team/keys/cmk/create", map[string]any{"kty": "RSA"}, nil)
	var mi struct {
		PrincipalID string `json:"principalId"`
		ClientID    string `json:"clientId"`
	}
	e.MustDo(t, "POST", "/coffer/v1/managedIdentities", map[string]any{"name": "registry-cmk"}, &mi)
	keyURL := e.HostURL("team") + "/keys/"
	enable := func(key, ident string) error {
		return e.Do("POST", "/coffer/v1/registry/encryption/enable", map[string]any{"keyEncryptionKey": keyURL + key, "identity": ident}, nil)
	}
	if err := enable("cmk", mi.ClientID); err == nil || !strings.Contains(err.Error(), "get permission") {
		t.Fatalf("enable without permissions: %v", err)
	}
	e.SetPolicy(t, "team", mi.PrincipalID, "get")
	if err := enable("ec", mi.ClientID); err == nil || !strings.Contains(err.Error(), "type EC") {
		t.Fatalf("enable with an EC key: %v", err)
	}
	if err := enable("cmk", mi.ClientID); err == nil || !strings.Contains(err.Error(), "wrapKey permission") {
		t.Fatalf("enable without wrapKey: %v", err)
	}
	e.SetPolicy(t, "team", mi.PrincipalID, "get", "wrapKey")
	if err := enable("cmk", mi.ClientID); err == nil || !strings.Contains(err.Error(), "unwrapKey permission") {
		t.Fatalf("enable without unwrapKey: %v", err)
	}
	e.SetPolicy(t, "team", mi.PrincipalID, "get", "wrapKey", "unwrapKey")
	c := newRegistryClient(t, e)
	if err := c.push("guarded/app:v1", markedImage(t, "v1")); err != nil {
		t.Fatal(err)
	}
	if err := enable("cmk", mi.ClientID); err != nil {
		t.Fatalf("enable: %v", err)
	}
	if err := enable("cmk", mi.ClientID); err == nil || !strings.Contains(err.Error(), "already enabled") {
		t.Fatalf("second enable: %v", err)
	}
	if err := e.Do("POST", "/coffer/v1/registry/encryption/disable", nil, nil); err == nil || !strings.Contains(err.Error(), "cannot be disabled") {
		t.Fatalf("disable: %v", err)
	}
	if err := c.pull("guarded/app:v1"); err != nil {
		t.Fatalf("pull after enable: %v", err)
	}
	err := e.Do("DELETE", "/coffer/v1/managedIdentities/"+mi.ClientID, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "rotate-key") {
		t.Fatalf("deleting the identity in use: %v", err)
	}
	if err := e.Do("POST", "/coffer/v1/registry/encryption/rotate-key", map[string]any{"keyEncryptionKey": keyURL + "cmk", "identity": "[system]"}, nil); err == nil {
		t.Fatal("rotate to [system] without its access succeeded")
	}
	e.SetPolicy(t, "team", e.SystemIdentity(t), "get", "wrapKey", "unwrapKey")
	e.MustDo(t, "POST", "/coffer/v1/registry/encryption/rotate-key", map[string]any{"keyEncryptionKey": keyURL + "cmk", "identity": "[system]"}, nil)
	e.MustDo(t, "DELETE", "/coffer/v1/managedIdentities/"+mi.ClientID, nil, nil)
	if err := c.pull("guarded/app:v1"); err != nil {
		t.Fatalf("pull after rotating to [system]: %v", err)
	}

	// A vault of this server on a port of its own is reached in-process too.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	pv := e.CreateVault(t, "ported", map[string]any{"port": port})
	e.SetPolicy(t, "ported", adminID(t, e), "create", "get")
	e.SetPolicy(t, "ported", e.SystemIdentity(t), "get", "wrapKey", "unwrapKey")
	e.MustDo(t, "POST", "/coffer/v1/vaults/ported/keys/k/create", map[string]any{"kty": "RSA"}, nil)
	var st struct {
		KeyAccessible      bool `json:"keyAccessible"`
		KeyVaultProperties struct {
			VersionedKeyIdentifier string `json:"versionedKeyIdentifier"`
		} `json:"keyVaultProperties"`
	}
	e.MustDo(t, "POST", "/coffer/v1/registry/encryption/rotate-key", map[string]any{"keyEncryptionKey": pv.VaultURI + "/keys/k", "identity": "[system]"}, &st)
	if !st.KeyAccessible || !strings.HasPrefix(st.KeyVaultProperties.VersionedKeyIdentifier, pv.VaultURI+"/keys/k/") {
		t.Fatalf("after rotating to the ported vault: %+v", st)
	}
	if err := c.pull("guarded/app:v1"); err != nil {
		t.Fatalf("pull after rotating to the ported vault: %v", err)
	}
	resp, err := e.HTTP.Get(e.Inst.URL + "/healthz")
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// TestRoleAssignmentRevocation uses a vault with role-based access: the managed identity
// holds "Key Vault Crypto Service Encryption User" on the key. Removing the assignment stops
// the registry within the interval; assigning the role again brings it back.
func TestRoleAssignmentRevocation(t *testing.T) {
	const interval = 2 * time.Second
	e := vaulttest.Start(t, func(c *config.Server) { c.Encryption.KeyAccessCheckInterval = interval })
	e.CreateVault(t, "rbac", map[string]any{"enableRbacAuthorization": true})
	e.MustDo(t, "POST", "/coffer/v1/vaults/rbac/keys/cmk/create", map[string]any{"kty": "RSA-HSM"}, nil)
	var mi struct {
		PrincipalID string `json:"principalId"`
		ClientID    string `json:"clientId"`
	}
	e.MustDo(t, "POST", "/coffer/v1/managedIdentities", map[string]any{"name": "registry-rbac"}, &mi)
	assign := func() string {
		var a struct {
			ID string `json:"id"`
		}
		e.MustDo(t, "POST", "/coffer/v1/role-assignments", map[string]any{
			"role": "Key Vault Crypto Service Encryption User", "assignee": mi.PrincipalID, "scope": "/vaults/rbac/keys/cmk"}, &a)
		return a.ID
	}
	id := assign()
	e.MustDo(t, "POST", "/coffer/v1/registry/encryption/enable", map[string]any{
		"keyEncryptionKey": e.HostURL("rbac") + "/keys/cmk", "identity": mi.ClientID}, nil)
	c := newRegistryClient(t, e)
	if err := c.push("rbac/app:v1", markedImage(t, "v1")); err != nil {
		t.Fatal(err)
	}
	e.MustDo(t, "DELETE", "/coffer/v1/role-assignments/"+id, nil, nil)
	vaulttest.Eventually(t, interval+3*time.Second, "pull refused after the role assignment was removed", func() error {
		if err := c.pull("rbac/app:v1"); err == nil || !strings.Contains(err.Error(), "cannot use") {
			return fmt.Errorf("pull: %v", err)
		}
		return nil
	})
	assign()
	vaulttest.Eventually(t, interval+3*time.Second, "pull after the role was assigned again", func() error { return c.pull("rbac/app:v1") })

	// Deleting the key (soft delete) stops the registry; recovering it brings it back.
	e.MustDo(t, "DELETE", "/coffer/v1/vaults/rbac/keys/cmk", nil, nil)
	vaulttest.Eventually(t, interval+3*time.Second, "pull refused after the key was deleted", func() error {
		if err := c.pull("rbac/app:v1"); err == nil || !strings.Contains(err.Error(), "not found") {
			return fmt.Errorf("pull: %v", err)
		}
		return nil
	})
	e.MustDo(t, "POST", "/coffer/v1/vaults/rbac/deletedkeys/cmk/recover", nil, nil)
	vaulttest.Eventually(t, interval+3*time.Second, "pull after the key was recovered", func() error { return c.pull("rbac/app:v1") })
	if err := c.push("rbac/app:v2", markedImage(t, "v2")); err != nil {
		t.Fatalf("push after recovery: %v", err)
	}
}

// TestRemoteVaultKeyWithManagedIdentity reaches a key in another Coffer server's vault as a
// managed identity of that server, through its managed-identity endpoint
// (IDENTITY_ENDPOINT / IDENTITY_HEADER, as on a host that runs beside it).
func TestRemoteVaultKeyWithManagedIdentity(t *testing.T) {
	kv := vaulttest.Start(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	v := kv.CreateVault(t, "mikeys", map[string]any{"port": port})
	kv.SetPolicy(t, "mikeys", adminID(t, kv), "create", "get")
	kv.MustDo(t, "POST", "/coffer/v1/vaults/mikeys/keys/cmk/create", map[string]any{"kty": "RSA"}, nil)
	var mi struct {
		PrincipalID string `json:"principalId"`
		ClientID    string `json:"clientId"`
	}
	kv.MustDo(t, "POST", "/coffer/v1/managedIdentities", map[string]any{"name": "remote-registry"}, &mi)
	kv.SetPolicy(t, "mikeys", mi.PrincipalID, "get", "wrapKey", "unwrapKey")
	header, err := os.ReadFile(filepath.Join(kv.Inst.DataDir, "keys", "identity-header"))
	if err != nil {
		t.Fatal(err)
	}
	// The Azure SDK's managed-identity credential reads these from the process environment
	// itself (it has no option for them): set them as an operator would.
	t.Setenv("IDENTITY_ENDPOINT", kv.Inst.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", strings.TrimSpace(string(header)))
	reg := vaulttest.Start(t, func(c *config.Server) {
		c.Encryption.KeyID = v.VaultURI + "/keys/cmk"
		c.Encryption.Identity = mi.ClientID
		c.Encryption.VaultCAFile = kv.Inst.CAFile
	})
	c := newRegistryClient(t, reg)
	if err := c.push("mi/app:v1", markedImage(t, "v1")); err != nil {
		t.Fatal(err)
	}
	if err := c.pull("mi/app:v1"); err != nil {
		t.Fatal(err)
	}
	var st struct {
		Status        string `json:"status"`
		KeyAccessible bool   `json:"keyAccessible"`
	}
	reg.MustDo(t, "GET", "/coffer/v1/registry/encryption", nil, &st)
	if st.Status != "enabled" || !st.KeyAccessible {
		t.Fatalf("show = %+v", st)
	}
}

// TestRestart: content pushed before a restart reads after it (the root key is unwrapped at
// start); a server restarted while its key is not accessible still starts, refuses pulls
// with the cause, and serves again when access comes back, without another restart.
func TestRestart(t *testing.T) {
	const interval = 2 * time.Second
	dir := t.TempDir()
	cfg := func(c *config.Server) {
		c.DataDir = dir
		c.Encryption.KeyAccessCheckInterval = interval
	}
	e := vaulttest.Start(t, cfg)
	if err := newRegistryClient(t, e).push("restart/app:v1", markedImage(t, "v1")); err != nil {
		t.Fatal(err)
	}
	e.Inst.Stop()

	e = vaulttest.Start(t, cfg)
	if err := newRegistryClient(t, e).pull("restart/app:v1"); err != nil {
		t.Fatalf("pull after a restart: %v", err)
	}
	sys := e.SystemIdentity(t)
	e.MustDo(t, "DELETE", "/coffer/v1/vaults/coffer-platform/access-policies/"+sys, nil, nil)
	e.Inst.Stop()

	e = vaulttest.Start(t, cfg)
	c := newRegistryClient(t, e)
	if err := c.pull("restart/app:v1"); err == nil || !strings.Contains(err.Error(), "cannot use") {
		t.Fatalf("pull with the key revoked at start: %v", err)
	}
	e.SetPolicy(t, "coffer-platform", sys, "get", "wrapKey", "unwrapKey")
	vaulttest.Eventually(t, interval+3*time.Second, "pull after access came back", func() error { return c.pull("restart/app:v1") })
}

// bigImage is an image with one layer of n bytes (cheap to build: repeated text).
func bigImage(t *testing.T, n int) v1.Image {
	t.Helper()
	content := bytes.Repeat([]byte(marker+" big layer\n"), n/(len(marker)+11)+1)[:n]
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, static.NewLayer(content, types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestRotationVaultCallsIndependentOfData counts, in the vault's audit trail, the calls the
// registry's identity makes for one rotation with 10 MiB stored and with 10 times more: the
// same, and everything stored still pulls.
func TestRotationVaultCallsIndependentOfData(t *testing.T) {
	e := vaulttest.Start(t, nil)
	e.CreateVault(t, "team", nil)
	e.SetPolicy(t, "team", adminID(t, e), "create", "get", "rotate")
	e.MustDo(t, "POST", "/coffer/v1/vaults/team/keys/cmk/create", map[string]any{"kty": "RSA"}, nil)
	sys := e.SystemIdentity(t)
	e.SetPolicy(t, "team", sys, "get", "wrapKey", "unwrapKey")
	keyURL := e.HostURL("team") + "/keys/cmk"
	e.MustDo(t, "POST", "/coffer/v1/registry/encryption/enable", map[string]any{"keyEncryptionKey": keyURL, "identity": "[system]"}, nil)
	c := newRegistryClient(t, e)

	calls := func() int {
		var out struct {
			Value []map[string]any `json:"value"`
		}
		e.MustDo(t, "GET", "/coffer/v1/audit?vault=team&identity="+sys+"&limit=10000", nil, &out)
		return len(out.Value)
	}
	rotate := func() int {
		var k struct {
			Key struct {
				Kid string `json:"kid"`
			} `json:"key"`
		}
		e.MustDo(t, "POST", "/coffer/v1/vaults/team/keys/cmk/rotate", nil, &k)
		before := calls()
		e.MustDo(t, "POST", "/coffer/v1/registry/encryption/rotate-key", map[string]any{"keyEncryptionKey": k.Key.Kid}, nil)
		return calls() - before
	}
	if err := c.push("rot/app:small", bigImage(t, 10<<20)); err != nil {
		t.Fatal(err)
	}
	small := rotate()
	if err := c.push("rot/app:large", bigImage(t, 100<<20)); err != nil {
		t.Fatal(err)
	}
	large := rotate()
	if small != large || small == 0 || small > 5 {
		t.Fatalf("vault calls by the registry for one rotation: %d with 10 MiB stored, %d with 110 MiB; want equal and small", small, large)
	}
	t.Logf("vault calls per rotation: %d (10 MiB stored), %d (110 MiB stored)", small, large)
	for _, tag := range []string{"small", "large"} {
		if err := c.pull("rot/app:" + tag); err != nil {
			t.Fatalf("pull %s after rotations: %v", tag, err)
		}
	}
}
