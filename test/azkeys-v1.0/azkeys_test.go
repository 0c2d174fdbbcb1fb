package azkeysv10

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// server is a coffer process started for the test.
type server struct {
	url, addr, port, dataDir string
	http                     *http.Client
	token, tenant            string
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start builds coffer from the repository root and runs `coffer serve` until the test ends.
func start(t *testing.T) *server {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "coffer")
	build := exec.Command("go", "build", "-o", bin, "./cmd/coffer")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build coffer: %v\n%s", err, out)
	}
	port := freePort(t)
	s := &server{addr: "127.0.0.1:" + strconv.Itoa(port), port: strconv.Itoa(port), dataDir: filepath.Join(dir, "data")}
	s.url = "https://" + s.addr
	cmd := exec.Command(bin, "serve", "--data-dir", s.dataDir, "--listen", s.addr)
	cmd.Env = append(os.Environ(), "COFFER_VAULT_ROOT_KEY=")
	stderr, _ := cmd.StderrPipe()
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, bufio.NewReader(stderr))
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	var pool *x509.CertPool
	for {
		pem, err := os.ReadFile(filepath.Join(s.dataDir, "tls", "ca.pem"))
		if err == nil {
			pool = x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			if resp, err := c.Get(s.url + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("coffer did not become ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	s.http = &http.Client{Timeout: time.Minute, Transport: &recorder{seen: map[string]bool{}, next: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, p, err := net.SplitHostPort(addr); err == nil && strings.HasSuffix(host, ".vault.localhost") && p == s.port {
				addr = s.addr
			}
			return dialer.DialContext(ctx, network, addr)
		}}}}
	pw, err := os.ReadFile(filepath.Join(s.dataDir, "initial-admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {strings.TrimSpace(string(pw))}, "service": {"coffer-management"}}
	resp, err := s.http.PostForm(s.url+"/oauth2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	s.token = tok.AccessToken
	var who struct {
		TenantID string `json:"tenantId"`
	}
	s.do(t, "GET", "/coffer/v1/whoami", nil, &who)
	s.tenant = who.TenantID
	return s
}

func (s *server) do(t *testing.T, method, path string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		raw, _ := json.Marshal(in)
		body = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, s.url+path, body)
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		json.Unmarshal(raw, out)
	}
}

// recorder notes the api-version of every request: proof of the SDK version in use.
type recorder struct {
	mu   sync.Mutex
	seen map[string]bool
	next http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if v := req.URL.Query().Get("api-version"); v != "" {
		r.mu.Lock()
		r.seen[v] = true
		r.mu.Unlock()
	}
	return r.next.RoundTrip(req)
}

type principal struct{ objectID, clientID, secret string }

func (s *server) servicePrincipal(t *testing.T, name string, vault string, perms ...string) principal {
	t.Helper()
	var out struct {
		ServicePrincipal struct {
			ID string `json:"id"`
		} `json:"servicePrincipal"`
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}
	s.do(t, "POST", "/coffer/v1/servicePrincipals", map[string]any{"name": name}, &out)
	s.do(t, "PUT", "/coffer/v1/vaults/"+vault+"/access-policies/"+out.ServicePrincipal.ID, map[string]any{"keyPermissions": perms}, nil)
	return principal{out.ServicePrincipal.ID, out.ClientID, out.ClientSecret}
}

func (s *server) client(t *testing.T, vaultURL string, p principal, disableCheck bool) *azkeys.Client {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(s.tenant, p.clientID, p.secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            policy.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: s.url + "/"}, Transport: s.http},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := azkeys.NewClient(vaultURL, cred, &azkeys.ClientOptions{
		ClientOptions:                        policy.ClientOptions{Transport: s.http, Retry: policy.RetryOptions{MaxRetries: -1}},
		DisableChallengeResourceVerification: disableCheck,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func status(err error) (int, string) {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode, re.ErrorCode
	}
	return 0, fmt.Sprint(err)
}

func TestAzkeysV10(t *testing.T) {
	s := start(t)
	ctx := context.Background()
	s.do(t, "POST", "/coffer/v1/vaults", map[string]any{"name": "team1", "enablePurgeProtection": true}, nil)
	app := s.servicePrincipal(t, "app", "team1", "all")
	noUnwrap := s.servicePrincipal(t, "wrapper", "team1", "get", "wrapKey")
	c := s.client(t, "https://team1.vault.localhost:"+s.port, app, false)

	k, err := c.CreateKey(ctx, "kek", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr[int32](2048)}, nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	v1 := k.Key.KID.Version()
	if len(v1) != 32 || k.Key.KID.Name() != "kek" {
		t.Fatalf("kid %s", *k.Key.KID)
	}
	if g, err := c.GetKey(ctx, "kek", "", nil); err != nil || g.Key.KID.Version() != v1 {
		t.Fatalf("versionless get: %v", err)
	}
	if _, err := c.UpdateKey(ctx, "kek", v1, azkeys.UpdateKeyParameters{Tags: map[string]*string{"a": to.Ptr("b")}}, nil); err != nil {
		t.Fatalf("update: %v", err)
	}
	dek := make([]byte, 32)
	rand.Read(dek)
	alg := to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256)
	w1, err := c.WrapKey(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: alg, Value: dek}, nil)
	if err != nil || w1.KID.Version() != v1 {
		t.Fatalf("versionless wrap: %v", err)
	}
	rot, err := c.RotateKey(ctx, "kek", nil)
	if err != nil || rot.Key.KID.Version() == v1 {
		t.Fatalf("rotate: %v", err)
	}
	w2, err := c.WrapKey(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: alg, Value: dek}, nil)
	if err != nil || w2.KID.Version() != rot.Key.KID.Version() {
		t.Fatalf("wrap after rotation answered %v: %v", w2.KID, err)
	}
	un, err := c.UnwrapKey(ctx, "kek", w1.KID.Version(), azkeys.KeyOperationParameters{Algorithm: alg, Value: w1.Result}, nil)
	if err != nil || !bytes.Equal(un.Result, dek) {
		t.Fatalf("unwrap with the old version: %v", err)
	}
	n := 0
	for pg := c.NewListKeyPropertiesPager(nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		n += len(page.Value)
	}
	if n != 1 {
		t.Fatalf("listed %d keys", n)
	}
	vers := 0
	for pg := c.NewListKeyPropertiesVersionsPager("kek", nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		vers += len(page.Value)
	}
	if vers != 2 {
		t.Fatalf("%d versions", vers)
	}
	d := sha256.Sum256([]byte("x"))
	sig, err := c.Sign(ctx, "kek", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmPS256), Value: d[:]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Verify(ctx, "kek", sig.KID.Version(), azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmPS256), Digest: d[:], Signature: sig.Result}, nil); err != nil || !*ok.Value {
		t.Fatalf("verify: %v", err)
	}

	// EC refuses RSA-OAEP; an identity without unwrapKey gets 403.
	if _, err := c.CreateKey(ctx, "ec", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeEC), Curve: to.Ptr(azkeys.CurveNameP256)}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.WrapKey(ctx, "ec", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP), Value: dek}, nil)
	if st, code := status(err); st != 400 || code != "BadParameter" {
		t.Fatalf("EC with RSA-OAEP: %d %s", st, code)
	}
	wc := s.client(t, "https://team1.vault.localhost:"+s.port, noUnwrap, false)
	if _, err := wc.WrapKey(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: alg, Value: dek}, nil); err != nil {
		t.Fatalf("wrap with wrapKey: %v", err)
	}
	_, err = wc.UnwrapKey(ctx, "kek", w2.KID.Version(), azkeys.KeyOperationParameters{Algorithm: alg, Value: w2.Result}, nil)
	if st, code := status(err); st != 403 || code != "Forbidden" {
		t.Fatalf("unwrap without permission: %d %s", st, code)
	}

	// Delete → 404 → recover → works; purge refused under purge protection.
	if _, err := c.DeleteKey(ctx, "kek", nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetKey(ctx, "kek", "", nil)
	if st, code := status(err); st != 404 || code != "KeyNotFound" {
		t.Fatalf("get deleted: %d %s", st, code)
	}
	if _, err := c.GetDeletedKey(ctx, "kek", nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.PurgeDeletedKey(ctx, "kek", nil)
	if st, _ := status(err); st != 403 {
		t.Fatalf("purge under protection: %v", err)
	}
	if _, err := c.RecoverDeletedKey(ctx, "kek", nil); err != nil {
		t.Fatal(err)
	}
	if un, err := c.UnwrapKey(ctx, "kek", w2.KID.Version(), azkeys.KeyOperationParameters{Algorithm: alg, Value: w2.Result}, nil); err != nil || !bytes.Equal(un.Result, dek) {
		t.Fatalf("unwrap after recover: %v", err)
	}
	bk, err := c.BackupKey(ctx, "ec", nil)
	if err != nil {
		t.Fatal(err)
	}
	s.do(t, "POST", "/coffer/v1/vaults", map[string]any{"name": "team2", "port": freePort(t)}, nil)
	var v2 struct {
		VaultURI string `json:"vaultUri"`
	}
	s.do(t, "GET", "/coffer/v1/vaults/team2", nil, &v2)
	s.do(t, "PUT", "/coffer/v1/vaults/team2/access-policies/"+app.objectID, map[string]any{"keyPermissions": []string{"all"}}, nil)
	// team2 by its own port (no DNS name), as `coffer vault show` reports it.
	c2 := s.client(t, v2.VaultURI, app, true)
	if r, err := c2.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: bk.Value}, nil); err != nil || r.Key.KID.Name() != "ec" {
		t.Fatalf("restore into team2: %v", err)
	}
	pol, err := c.UpdateKeyRotationPolicy(ctx, "kek", azkeys.KeyRotationPolicy{Attributes: &azkeys.KeyRotationPolicyAttributes{ExpiryTime: to.Ptr("P60D")},
		LifetimeActions: []*azkeys.LifetimeAction{{Action: &azkeys.LifetimeActionType{Type: to.Ptr(azkeys.KeyRotationPolicyActionRotate)},
			Trigger: &azkeys.LifetimeActionTrigger{TimeBeforeExpiry: to.Ptr("P10D")}}}}, nil)
	if err != nil || *pol.Attributes.ExpiryTime != "P60D" {
		t.Fatalf("rotation policy: %v", err)
	}
	if rb, err := c.GetRandomBytes(ctx, azkeys.GetRandomBytesParameters{Count: to.Ptr[int32](16)}, nil); err != nil || len(rb.Value) != 16 {
		t.Fatalf("random bytes: %v", err)
	}
	rec := s.http.Transport.(*recorder)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.seen) != 1 || !rec.seen["7.4"] {
		t.Fatalf("api-versions sent: %v, want only 7.4 (azkeys v1.0.x)", rec.seen)
	}
}
