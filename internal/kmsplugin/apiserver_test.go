// These tests drive the kube-apiserver's own envelope encryption code
// (k8s.io/apiserver's encryptionconfig.LoadEncryptionConfig, what --encryption-provider-config
// builds) against `coffer kms-plugin` run as a separate process, against a running Coffer
// server.
package kmsplugin_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	"k8s.io/apiserver/pkg/storage/value"
	kmstypes "k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2/v2"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

const prefix = "k8s:enc:kms:v2:coffer:"

// plugin is `coffer kms-plugin` running as a child process.
type plugin struct {
	cmd    *exec.Cmd
	socket string
	health string // http://127.0.0.1:PORT
}

func startPlugin(t *testing.T, e *vaulttest.Env, sp vaulttest.Principal, cluster, socket string, extra ...string) *plugin {
	t.Helper()
	return startPluginEnv(t, e, []string{"AZURE_CLIENT_ID=" + sp.ClientID, "AZURE_CLIENT_SECRET=" + sp.Secret, "AZURE_TENANT_ID=" + e.TenantID}, sp.Secret, cluster, socket, extra...)
}

// startPluginEnv starts the plugin with the identity in env (added to this process's
// environment, without any AZURE_* or IDENTITY_* of its own); secret must not appear in its logs.
func startPluginEnv(t *testing.T, e *vaulttest.Env, env []string, secret, cluster, socket string, extra ...string) *plugin {
	t.Helper()
	args := append([]string{"kms-plugin", "--listen", "unix://" + socket,
		"--server", e.Inst.URL, "--ca-file", e.Inst.CAFile, "--cluster", cluster,
		"--self-test-interval", "500ms", "--key-rotation-poll", "1h", "--health-listen", "127.0.0.1:0", "--log-level", "debug"}, extra...)
	cmd := exec.Command(servertest.Binary(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AZURE_") && !strings.HasPrefix(kv, "IDENTITY_") && !strings.HasPrefix(kv, "MSI_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if os.Getenv("COFFER_TEST_LOG") != "" {
		cmd.Stderr = io.MultiWriter(&logs, os.Stderr)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &plugin{cmd: cmd, socket: socket}
	t.Cleanup(func() { p.stop(t) })
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case line <- sc.Text():
			default:
			}
		}
	}()
	select {
	case l := <-line:
		_, after, ok := strings.Cut(l, "(health on ")
		if !ok {
			t.Fatalf("plugin said %q", l)
		}
		p.health = "http://" + strings.TrimSuffix(after, ")")
	case <-time.After(60 * time.Second):
		t.Fatalf("plugin did not start: %s", logs.String())
	}
	fi, err := os.Stat(socket)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v mode %v, want 0600", socket, err, fi.Mode().Perm())
	}
	if strings.Contains(logs.String(), secret) {
		t.Fatal("the plugin logged its client secret")
	}
	return p
}

func (p *plugin) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("plugin exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		t.Error("plugin did not stop within 15s of SIGTERM")
	}
}

// healthz is the plugin's /healthz answer.
func (p *plugin) healthz(t *testing.T) (int, string) {
	resp, err := http.Get(p.health + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// waitHealth waits until /healthz answers code with a body containing want.
func (p *plugin) waitHealth(t *testing.T, code int, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, body := p.healthz(t)
		if c == code && strings.Contains(body, want) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin /healthz: %d %q, want %d with %q", c, body, code, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *plugin) poll(t *testing.T) {
	resp, err := http.Post(p.health+"/poll", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /poll: %d", resp.StatusCode)
	}
}

func (p *plugin) grpc(t *testing.T) kmsapi.KeyManagementServiceClient {
	conn, err := grpc.NewClient("unix://"+p.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kmsapi.NewKeyManagementServiceClient(conn)
}

// apiserver is the apiserver's transformer for secrets, built from an EncryptionConfiguration.
type apiserver struct {
	tr     value.Transformer
	health func() error
	cancel context.CancelFunc
}

func loadAPIServer(t *testing.T, socket string) *apiserver {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "encryption.yaml")
	yaml := fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms:
          apiVersion: v2
          name: coffer
          endpoint: unix://%s
          timeout: 5s
      - identity: {}
`, socket)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ec, err := encryptionconfig.LoadEncryptionConfig(ctx, cfg, false, "coffer-test-apiserver")
	if err != nil {
		t.Fatalf("LoadEncryptionConfig: %v", err)
	}
	tr, ok := ec.Transformers[schema.GroupResource{Resource: "secrets"}]
	if !ok || len(ec.HealthChecks) != 1 {
		t.Fatalf("transformers %v, %d health checks", ec.Transformers, len(ec.HealthChecks))
	}
	h := ec.HealthChecks[0]
	return &apiserver{tr: tr, cancel: cancel, health: func() error {
		req, _ := http.NewRequest(http.MethodGet, "/healthz", nil)
		return h.Check(req)
	}}
}

type stored struct {
	name, plain string
	data        []byte
	keyID       string
}

func (a *apiserver) write(t *testing.T, name string) stored {
	t.Helper()
	plain := fmt.Sprintf(`{"kind":"Secret","metadata":{"name":%q},"data":{"password":"COFFER-PLAINTEXT-%s"}}`, name, name)
	out, err := a.tr.TransformToStorage(context.Background(), []byte(plain), value.DefaultContext("/registry/secrets/default/"+name))
	if err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	if !bytes.HasPrefix(out, []byte(prefix)) {
		t.Fatalf("stored %s does not start with %s: %q", name, prefix, out[:min(40, len(out))])
	}
	if bytes.Contains(out, []byte("COFFER-PLAINTEXT")) {
		t.Fatalf("stored %s holds the plaintext", name)
	}
	var eo kmstypes.EncryptedObject
	if err := proto.Unmarshal(out[len(prefix):], &eo); err != nil {
		t.Fatalf("stored %s is not an EncryptedObject: %v", name, err)
	}
	return stored{name: name, plain: plain, data: out, keyID: eo.GetKeyID()}
}

func (a *apiserver) read(t *testing.T, s stored) (stale bool, err error) {
	t.Helper()
	got, stale, err := a.tr.TransformFromStorage(context.Background(), s.data, value.DefaultContext("/registry/secrets/default/"+s.name))
	if err != nil {
		return false, err
	}
	if string(got) != s.plain {
		t.Fatalf("read %s: got %q", s.name, got)
	}
	return stale, nil
}

func (a *apiserver) mustRead(t *testing.T, s stored) bool {
	t.Helper()
	stale, err := a.read(t, s)
	if err != nil {
		t.Fatalf("read %s (key %s): %v", s.name, s.keyID, err)
	}
	return stale
}

// kmsEnv is a Coffer server with the plugin's service principal and a PMK cluster.
type kmsEnv struct {
	e  *vaulttest.Env
	sp vaulttest.Principal
}

func newKMSEnv(t *testing.T, cluster string) *kmsEnv {
	e := vaulttest.Start(t, nil)
	sp := e.ServicePrincipal(t, "kms-"+cluster)
	var c wire.KMSCluster
	e.MustDo(t, "POST", "/coffer/v1/kms/clusters", wire.KMSClusterRequest{Name: cluster, KeyManagement: "PMK", Identity: sp.ClientID}, &c)
	if c.KeyManagement != "PMK" || !strings.HasSuffix(c.SecurityProfile.AzureKeyVaultKms.KeyID, "/keys/kms-"+cluster) {
		t.Fatalf("created cluster: %+v", c)
	}
	return &kmsEnv{e: e, sp: sp}
}

func (k *kmsEnv) show(t *testing.T, cluster string) wire.KMSCluster {
	var c wire.KMSCluster
	k.e.MustDo(t, "GET", "/coffer/v1/kms/clusters/"+cluster, nil, &c)
	return c
}

// keyInVault creates an RSA 2048 key in vault (the administrator gets an access policy).
func keyInVault(t *testing.T, e *vaulttest.Env, vault, name string) {
	keyInVaultB(t, e, vault, name, 2048)
}

func keyInVaultB(t testing.TB, e *vaulttest.Env, vault, name string, size int) {
	var who wire.Whoami
	e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	e.SetPolicy(t, vault, who.ID, "create", "get", "list")
	e.MustDo(t, "POST", "/coffer/v1/vaults/"+vault+"/keys/"+name+"/create", wire.CreateKeyRequest{Kty: "RSA", Size: size}, nil)
}

func freePort(t *testing.T) int { return freePortB(t) }

// freePortB returns a port nobody listens on now.
func freePortB(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestAPIServerEnvelope: Secrets written by the apiserver's transformer are stored under the
// plugin's key and read back; a rotation is picked up by the poll (new key_id, old values
// read, reported stale); PMK → CMK with a plugin restart and back, and every earlier value
// still reads in a fresh apiserver (cold caches).
func TestAPIServerEnvelope(t *testing.T) {
	k := newKMSEnv(t, "c1")
	e := k.e
	sock := filepath.Join(t.TempDir(), "kms.sock")
	// A stale socket file from an earlier run is removed.
	if l, err := net.Listen("unix", sock); err == nil {
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
	}
	p := startPlugin(t, e, k.sp, "c1", sock)
	first := p.waitHealth(t, 200, "ok https://")
	v1 := strings.TrimPrefix(first, "ok ")

	st, err := p.grpc(t).Status(context.Background(), &kmsapi.StatusRequest{})
	if err != nil || st.Version != "v2" || st.Healthz != "ok" || st.KeyId != v1 {
		t.Fatalf("Status: %+v %v, want v2 ok %s", st, err, v1)
	}

	api := loadAPIServer(t, sock)
	s1 := api.write(t, "s1")
	if s1.keyID != v1 {
		t.Fatalf("s1 under %s, want %s", s1.keyID, v1)
	}
	if api.mustRead(t, s1) {
		t.Fatal("s1 reported stale right after it was written")
	}

	// Rotation: a new PMK version, the plugin's poll, the apiserver's health check.
	e.MustDo(t, "POST", "/coffer/v1/kms/clusters/c1/rotate", nil, nil)
	p.poll(t)
	v2 := strings.TrimPrefix(p.waitHealth(t, 200, "ok https://"), "ok ")
	for i := 0; v2 == v1 && i < 100; i++ {
		time.Sleep(100 * time.Millisecond)
		v2 = strings.TrimPrefix(p.waitHealth(t, 200, "ok https://"), "ok ")
	}
	if v2 == v1 || !strings.HasPrefix(v2, strings.TrimSuffix(v1, v1[strings.LastIndex(v1, "/"):])) {
		t.Fatalf("after the rotation the plugin reports %s (was %s)", v2, v1)
	}
	// The apiserver re-reads Status when its health check's 20s positive TTL has passed.
	deadline := time.Now().Add(40 * time.Second)
	var s2 stored
	for {
		if err := api.health(); err != nil {
			t.Fatalf("apiserver health check: %v", err)
		}
		s2 = api.write(t, "s2")
		if s2.keyID == v2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if s2.keyID != v2 {
		t.Fatalf("new writes after the rotation use %s, want %s", s2.keyID, v2)
	}
	if !api.mustRead(t, s1) {
		t.Fatal("s1, under the previous key version, is not reported stale")
	}
	if api.mustRead(t, s2) {
		t.Fatal("s2 reported stale")
	}
	if c := k.show(t, "c1"); c.CurrentKeyID != v2 || c.PluginStatus == nil || c.PluginStatus.Healthz != "ok" {
		t.Fatalf("cluster show after rotation: current %s status %+v, want %s ok", c.CurrentKeyID, c.PluginStatus, v2)
	}

	// PMK → CMK: the team's key in a vault on a port of its own, granted to the plugin.
	port := freePort(t)
	e.CreateVault(t, "team", map[string]any{"port": port})
	keyInVault(t, e, "team", "k8s")
	cmk := fmt.Sprintf("https://127.0.0.1:%d/keys/k8s", port)
	// The CMK is checked when it is configured: refused before the plugin's identity has access.
	err = e.Do("PATCH", "/coffer/v1/kms/clusters/c1", wire.KMSClusterRequest{KeyManagement: "CMK", KeyID: cmk}, nil)
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "cannot use key") {
		t.Fatalf("CMK without access: %v, want 400 naming the missing access", err)
	}
	e.SetPolicy(t, "team", k.sp.ObjectID, "get", "wrapKey", "unwrapKey")
	var c wire.KMSCluster
	e.MustDo(t, "PATCH", "/coffer/v1/kms/clusters/c1", wire.KMSClusterRequest{KeyManagement: "CMK", KeyID: cmk}, &c)
	if len(c.DecryptOnlyKeys) != 1 || c.DecryptOnlyKeys[0].KeyManagement != "PMK" {
		t.Fatalf("after PMK → CMK the decrypt-only keys are %+v", c.DecryptOnlyKeys)
	}
	// Restart the plugin: cold, it reads its settings from the server.
	p.stop(t)
	p = startPlugin(t, e, k.sp, "c1", sock)
	v3 := strings.TrimPrefix(p.waitHealth(t, 200, "ok "+cmk+"/"), "ok ")
	api.cancel()
	api = loadAPIServer(t, sock) // a fresh apiserver: no seed cached
	s3 := api.write(t, "s3")
	if s3.keyID != v3 {
		t.Fatalf("s3 under %s, want the CMK version %s", s3.keyID, v3)
	}
	for _, s := range []stored{s1, s2} {
		if !api.mustRead(t, s) {
			t.Fatalf("%s (PMK) not reported stale under the CMK", s.name)
		}
	}

	// CMK → PMK, picked up by the poll without a restart.
	e.MustDo(t, "PATCH", "/coffer/v1/kms/clusters/c1", wire.KMSClusterRequest{KeyManagement: "PMK"}, &c)
	if len(c.DecryptOnlyKeys) != 1 || c.DecryptOnlyKeys[0].KeyID != cmk {
		t.Fatalf("after CMK → PMK the decrypt-only keys are %+v, want the CMK only (the PMK is the write key again)", c.DecryptOnlyKeys)
	}
	p.poll(t)
	v4 := strings.TrimPrefix(p.waitHealth(t, 200, "ok "+strings.TrimSuffix(v2, v2[strings.LastIndex(v2, "/"):])), "ok ")
	if v4 != v2 {
		t.Fatalf("back on the PMK the plugin reports %s, want its newest version %s", v4, v2)
	}
	p.stop(t)
	p = startPlugin(t, e, k.sp, "c1", sock)
	p.waitHealth(t, 200, "ok "+v2)
	api.cancel()
	api = loadAPIServer(t, sock)
	s4 := api.write(t, "s4")
	if s4.keyID != v2 {
		t.Fatalf("s4 under %s, want %s", s4.keyID, v2)
	}
	for _, s := range []stored{s1, s2, s3, s4} {
		api.mustRead(t, s)
	}
}

// TestRevocationAndRecovery: with the plugin identity's access removed, Status fails, no
// new seed can be made and a value whose seed is not cached cannot be read, with the
// vault's reason; with access restored, all of it works again with no restart.
func TestRevocationAndRecovery(t *testing.T) {
	k := newKMSEnv(t, "c2")
	e := k.e
	sock := filepath.Join(t.TempDir(), "kms.sock")
	p := startPlugin(t, e, k.sp, "c2", sock)
	p.waitHealth(t, 200, "ok https://")
	api := loadAPIServer(t, sock)
	s1 := api.write(t, "s1")
	api.cancel()
	// A second apiserver, healthy, that has not read s1: its seed is not in its cache.
	cold := loadAPIServer(t, sock)
	cold.mustRead(t, cold.write(t, "s0"))

	e.MustDo(t, "DELETE", "/coffer/v1/vaults/coffer-kms/access-policies/"+k.sp.ObjectID, nil, nil)
	p.waitHealth(t, 503, "denied")
	kc := p.grpc(t)
	if _, err := kc.Status(context.Background(), &kmsapi.StatusRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Status with access revoked: %v, want Unavailable", err)
	}
	if _, err := kc.Encrypt(context.Background(), &kmsapi.EncryptRequest{Plaintext: make([]byte, 32), Uid: "t"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Encrypt with access revoked: %v, want PermissionDenied", err)
	}
	if _, err := cold.read(t, s1); err == nil || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("read of s1 with access revoked: %v, want the vault's denial", err)
	}
	if _, err := loadAPIServer(t, sock).tr.TransformToStorage(context.Background(), []byte("x"), value.DefaultContext("/registry/secrets/default/x")); err == nil {
		t.Fatal("a restarted apiserver could write with access revoked")
	}
	// The plugin reports each self-test to the server right after it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c := k.show(t, "c2")
		if c.PluginStatus != nil && c.PluginStatus.Healthz == "error" && strings.Contains(c.PluginStatus.Error, "denied") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster show with access revoked: plugin status %+v", c.PluginStatus)
		}
	}

	e.SetPolicy(t, "coffer-kms", k.sp.ObjectID, "get", "wrapKey", "unwrapKey")
	p.waitHealth(t, 200, "ok https://")
	if _, err := kc.Status(context.Background(), &kmsapi.StatusRequest{}); err != nil {
		t.Fatalf("Status after access is restored: %v", err)
	}
	cold.mustRead(t, s1)
}

// auditCount counts the vault's audit records of vault since after.
func auditCount(t *testing.T, e *vaulttest.Env, vault string, after int64) (n int, last int64, targets []string) {
	var out wire.List[wire.AuditRecord]
	e.MustDo(t, "GET", fmt.Sprintf("/coffer/v1/audit?vault=%s&after=%d&limit=10000", vault, after), nil, &out)
	last = after
	for _, r := range out.Value {
		targets = append(targets, r.Operation+" "+r.Target+" "+r.Result)
		last = max(last, r.Seq)
	}
	return len(out.Value), last, targets
}

// TestUnknownKeyIDStorm: 1,000 Decrypts with a key_id never issued, as the apiserver's
// retries would send, cost at most a handful of vault calls, counted in the audit trail.
func TestUnknownKeyIDStorm(t *testing.T) {
	k := newKMSEnv(t, "c4")
	e := k.e
	sock := filepath.Join(t.TempDir(), "kms.sock")
	p := startPlugin(t, e, k.sp, "c4", sock, "--self-test-interval", "1h")
	kid := strings.TrimPrefix(p.waitHealth(t, 200, "ok https://"), "ok ")
	kc := p.grpc(t)
	enc, err := kc.Encrypt(context.Background(), &kmsapi.EncryptRequest{Plaintext: make([]byte, 32), Uid: "seed"})
	if err != nil {
		t.Fatal(err)
	}
	_, seq, _ := auditCount(t, e, "coffer-kms", 0)
	for _, bogus := range []string{
		kid[:strings.LastIndex(kid, "/")] + "/00000000000000000000000000000000", // a version the vault never made
		"https://elsewhere.example/keys/other/1234",                             // a key the cluster never used
	} {
		for i := range 1000 {
			_, err := kc.Decrypt(context.Background(), &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: bogus, Uid: fmt.Sprint("storm-", i)})
			if status.Code(err) != codes.NotFound {
				t.Fatalf("Decrypt %d with key_id %s: %v, want NotFound", i, bogus, err)
			}
		}
	}
	n, _, targets := auditCount(t, e, "coffer-kms", seq)
	if n > 3 {
		t.Fatalf("2,000 Decrypts with unknown key_ids cost %d vault calls: %v", n, targets)
	}
	t.Logf("2,000 Decrypts with unknown key_ids: %d vault calls %v", n, targets)
	// A real key_id still decrypts.
	if _, err := kc.Decrypt(context.Background(), &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "real"}); err != nil {
		t.Fatal(err)
	}
	if n2, _, _ := auditCount(t, e, "coffer-kms", seq); n2 <= n {
		t.Fatalf("a real Decrypt left no audit record (%d then %d): the count above proves nothing", n, n2)
	}
}

// TestPrivateVaultAccess: a vault with defaultAction Deny and the CofferServices bypass serves
// the plugin configured as Private (through Coffer, as a Coffer service), and refuses it,
// naming the network rule, when it is configured as Public (direct calls from its address).
func TestPrivateVaultAccess(t *testing.T) {
	e := vaulttest.Start(t, nil)
	sp := e.ServicePrincipal(t, "kms-c5")
	port := freePort(t)
	e.CreateVault(t, "locked", map[string]any{"port": port})
	keyInVault(t, e, "locked", "k8s")
	e.MustDo(t, "PATCH", "/coffer/v1/vaults/locked", map[string]any{"networkAcls": map[string]any{"defaultAction": "Deny", "bypass": "CofferServices"}}, nil)
	e.SetPolicy(t, "locked", sp.ObjectID, "get", "wrapKey", "unwrapKey")
	cmk := fmt.Sprintf("https://127.0.0.1:%d/keys/k8s", port)
	e.MustDo(t, "POST", "/coffer/v1/kms/clusters", wire.KMSClusterRequest{Name: "c5", KeyManagement: "CMK", KeyID: cmk, Identity: sp.ClientID, KeyVaultNetworkAccess: "Private"}, nil)
	sock := filepath.Join(t.TempDir(), "kms.sock")
	p := startPlugin(t, e, sp, "c5", sock)
	p.waitHealth(t, 200, "ok "+cmk+"/")
	api := loadAPIServer(t, sock)
	s1 := api.write(t, "s1")
	api.mustRead(t, s1)

	e.MustDo(t, "PATCH", "/coffer/v1/kms/clusters/c5", wire.KMSClusterRequest{KeyVaultNetworkAccess: "Public"}, nil)
	p.poll(t)
	body := p.waitHealth(t, 503, "network")
	if !strings.Contains(body, "defaultAction=Deny") {
		t.Fatalf("the refusal does not name the network rule: %s", body)
	}
}
