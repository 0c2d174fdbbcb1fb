// These tests drive the apiserver's envelope encryption (encryptionconfig.LoadEncryptionConfig)
// against the plugin running inside `coffer serve` (--kms-plugin-socket), not as a process
// of its own.
package kmsplugin_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// startInProcess restarts the server of k on its data directory with the plugin of cluster
// in-process on sock, and returns the server and the plugin's socket and health address.
func startInProcess(t *testing.T, k *kmsEnv, cluster, sock string) (*vaulttest.Env, *plugin) {
	t.Helper()
	k.e.Inst.Stop()
	dir := k.e.Inst.DataDir
	e := vaulttest.Start(t, func(c *config.Server) {
		c.DataDir = dir
		c.KMSPlugin.Sockets = []string{"unix://" + sock}
		c.KMSPlugin.Cluster = cluster
		c.KMSPlugin.SelfTestInterval = 500 * time.Millisecond
		c.KMSPlugin.PollInterval = time.Hour
		c.KMSPlugin.HealthListen = "127.0.0.1:0"
	})
	k.e = e
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("in-process plugin socket %s: %v, mode %v; want a socket of mode 0600", sock, err, fi.Mode())
	}
	return e, &plugin{socket: sock, health: "http://" + e.Inst.Server.KMSPluginHealthAddr()}
}

// TestInProcessAPIServerEnvelope: the plugin inside `coffer serve`, as the cluster's service
// principal: Secrets stored by the apiserver's transformer start with k8s:enc:kms:v2:, hold no
// plaintext and read back; a PMK rotation is picked up (new key_id); revoking the identity's
// access makes Status fail and restoring it makes the plugin healthy with no restart;
// PMK → CMK writes under the CMK and every earlier value still reads in a fresh apiserver;
// the server's stop removes the socket.
func TestInProcessAPIServerEnvelope(t *testing.T) {
	k := newKMSEnv(t, "c6")
	sock := filepath.Join(t.TempDir(), "kms.sock")
	// A stale socket file from an earlier run is removed.
	if l, err := net.Listen("unix", sock); err == nil {
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
	}
	// The cluster's creation probed the key as its identity: only later records count.
	_, seq, _ := auditCount(t, k.e, "coffer-kms", 0)
	e, p := startInProcess(t, k, "c6", sock)
	v1 := strings.TrimPrefix(p.waitHealth(t, 200, "ok https://"), "ok ")
	kc := p.grpc(t)
	st, err := kc.Status(context.Background(), &kmsapi.StatusRequest{})
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
	// The wrap was made in the platform vault as the cluster's identity, not the server's.
	if !auditedAs(t, e, "coffer-kms", k.sp.ObjectID, seq) {
		t.Fatalf("no audit record in coffer-kms under the plugin identity %s", k.sp.ObjectID)
	}
	// The plugin's metrics, labelled by cluster, on its health port and the server's /metrics.
	for _, u := range []string{p.health + "/metrics", e.Inst.URL + "/metrics"} {
		if body := get(t, e.Inst.Client, u); !strings.Contains(body, `coffer_kms_plugin_key_info{cluster="c6",key_id="`+v1+`"} 1`) {
			t.Fatalf("%s lacks the key info of cluster c6:\n%s", u, grepLines(body, "coffer_kms_plugin"))
		}
	}

	// Rotation: a new PMK version through the management API. The plugin in the same server
	// polls before the call answers: the very next Status reports it, with no POST /poll.
	e.MustDo(t, "POST", "/coffer/v1/kms/clusters/c6/rotate", nil, nil)
	st, err = kc.Status(context.Background(), &kmsapi.StatusRequest{})
	if err != nil || st.KeyId == v1 || !strings.HasPrefix(st.KeyId, strings.TrimSuffix(v1, v1[strings.LastIndex(v1, "/"):])+"/") {
		t.Fatalf("Status right after cluster rotate: %+v %v, want a new version of the PMK (was %s)", st, err, v1)
	}
	v2 := st.KeyId
	p.waitHealth(t, 200, "ok "+v2)
	var s2 stored
	vaulttest.Eventually(t, 45*time.Second, "new writes use the new key_id", func() error {
		if err := api.health(); err != nil {
			return err
		}
		if s2 = api.write(t, "s2"); s2.keyID != v2 {
			return fmt.Errorf("s2 under %s, want %s", s2.keyID, v2)
		}
		return nil
	})
	if !api.mustRead(t, s1) {
		t.Fatal("s1, under the previous key version, is not reported stale")
	}

	// Revocation of the identity's access, then recovery, with no restart.
	e.MustDo(t, "DELETE", "/coffer/v1/vaults/coffer-kms/access-policies/"+k.sp.ObjectID, nil, nil)
	p.waitHealth(t, 503, "denied")
	if _, err := kc.Status(context.Background(), &kmsapi.StatusRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Status with access revoked: %v, want Unavailable", err)
	}
	if _, err := kc.Encrypt(context.Background(), &kmsapi.EncryptRequest{Plaintext: make([]byte, 32), Uid: "t"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Encrypt with access revoked: %v, want PermissionDenied", err)
	}
	vaulttest.Eventually(t, 10*time.Second, "the cluster shows the plugin's error", func() error {
		if c := k.show(t, "c6"); c.PluginStatus == nil || c.PluginStatus.Healthz != "error" || !strings.Contains(c.PluginStatus.Error, "denied") {
			return fmt.Errorf("plugin status %+v", c.PluginStatus)
		}
		return nil
	})
	e.SetPolicy(t, "coffer-kms", k.sp.ObjectID, "get", "wrapKey", "unwrapKey")
	p.waitHealth(t, 200, "ok "+v2)
	if _, err := kc.Status(context.Background(), &kmsapi.StatusRequest{}); err != nil {
		t.Fatalf("Status after access is restored: %v", err)
	}

	// PMK → CMK in a vault of this server on a port of its own, granted to the identity.
	port := freePort(t)
	e.CreateVault(t, "team", map[string]any{"port": port})
	keyInVault(t, e, "team", "k8s")
	e.SetPolicy(t, "team", k.sp.ObjectID, "get", "wrapKey", "unwrapKey")
	cmk := fmt.Sprintf("https://127.0.0.1:%d/keys/k8s", port)
	e.MustDo(t, "PATCH", "/coffer/v1/kms/clusters/c6", wire.KMSClusterRequest{KeyManagement: "CMK", KeyID: cmk}, nil)
	// The migration, too, reaches the plugin before the PATCH answers.
	st, err = kc.Status(context.Background(), &kmsapi.StatusRequest{})
	if err != nil || !strings.HasPrefix(st.KeyId, cmk+"/") {
		t.Fatalf("Status right after PMK → CMK: %+v %v, want a version of %s", st, err, cmk)
	}
	v3 := st.KeyId
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
	api.mustRead(t, s3)

	// A new version of the CMK made in its vault (coffer vault key rotate) reaches the plugin
	// with no poll (the poll interval is an hour): the vault tells the server of it.
	e.SetPolicy(t, "team", who(t, e), "create", "get", "list", "rotate")
	e.MustDo(t, "POST", "/coffer/v1/vaults/team/keys/k8s/rotate", nil, nil)
	var v4 string
	vaulttest.Eventually(t, 10*time.Second, "Status reports the CMK's new version", func() error {
		st, err := kc.Status(context.Background(), &kmsapi.StatusRequest{})
		if err != nil || st.KeyId == v3 || !strings.HasPrefix(st.KeyId, cmk+"/") {
			return fmt.Errorf("Status %+v %v, want a version of %s other than %s", st, err, cmk, v3)
		}
		v4 = st.KeyId
		return nil
	})
	vaulttest.Eventually(t, 45*time.Second, "new writes use the CMK's new version", func() error {
		if err := api.health(); err != nil {
			return err
		}
		if s4 := api.write(t, "s4"); s4.keyID != v4 {
			return fmt.Errorf("s4 under %s, want %s", s4.keyID, v4)
		}
		return nil
	})

	// SIGHUP to the server: every in-process plugin polls now (a get of its write key as the
	// cluster's identity, in the vault's audit trail; the self-tests only wrap and unwrap).
	_, seq, _ = auditCount(t, e, "team", 0)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	vaulttest.Eventually(t, 10*time.Second, "a poll after SIGHUP", func() error {
		if n := keyGets(t, e, "team", k.sp.ObjectID, seq); n == 0 {
			return fmt.Errorf("no get of the write key by %s since SIGHUP", k.sp.ObjectID)
		}
		return nil
	})

	// The server's graceful stop stops the plugin and removes its socket.
	api.cancel()
	e.Inst.Stop()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket %s after the server stopped: %v, want it removed", sock, err)
	}
}

// TestInProcessPrivateVault: a CMK in a second vault of the server whose network rules deny by
// default serves the in-process plugin while the vault lets Coffer's services bypass them
// (the plugin is one of them, whatever the cluster's keyVaultNetworkAccess); with bypass None
// the self-test fails, and Status, /healthz and the cluster's pluginStatus name the rule;
// the bypass restored, the plugin recovers with no restart.
func TestInProcessPrivateVault(t *testing.T) {
	e := vaulttest.Start(t, nil)
	sp := e.ServicePrincipal(t, "kms-c9")
	port := freePort(t)
	e.CreateVault(t, "locked", map[string]any{"port": port})
	keyInVault(t, e, "locked", "k8s")
	acls := func(bypass string) map[string]any {
		return map[string]any{"networkAcls": map[string]any{"defaultAction": "Deny", "bypass": bypass}}
	}
	e.MustDo(t, "PATCH", "/coffer/v1/vaults/locked", acls("CofferServices"), nil)
	e.SetPolicy(t, "locked", sp.ObjectID, "get", "wrapKey", "unwrapKey")
	cmk := fmt.Sprintf("https://127.0.0.1:%d/keys/k8s", port)
	e.MustDo(t, "POST", "/coffer/v1/kms/clusters", wire.KMSClusterRequest{Name: "c9", KeyManagement: "CMK", KeyID: cmk, Identity: sp.ClientID, KeyVaultNetworkAccess: "Private"}, nil)
	k := &kmsEnv{e: e, sp: sp}
	sock := filepath.Join(t.TempDir(), "kms.sock")
	e, p := startInProcess(t, k, "c9", sock)
	kid := strings.TrimPrefix(p.waitHealth(t, 200, "ok "+cmk+"/"), "ok ")
	kc := p.grpc(t)
	if st, err := kc.Status(context.Background(), &kmsapi.StatusRequest{}); err != nil || st.KeyId != kid {
		t.Fatalf("Status: %+v %v, want ok %s", st, err, kid)
	}
	api := loadAPIServer(t, sock)
	s1 := api.write(t, "s1")
	if s1.keyID != kid {
		t.Fatalf("s1 under %s, want %s", s1.keyID, kid)
	}
	api.mustRead(t, s1)
	// Public or Private, the in-process plugin reaches the key as a Coffer service.
	e.MustDo(t, "PATCH", "/coffer/v1/kms/clusters/c9", wire.KMSClusterRequest{KeyVaultNetworkAccess: "Public"}, nil)
	if st, err := kc.Status(context.Background(), &kmsapi.StatusRequest{}); err != nil || st.KeyId != kid {
		t.Fatalf("Status with keyVaultNetworkAccess Public: %+v %v, want ok %s", st, err, kid)
	}
	api.mustRead(t, s1)

	// No bypass: refused, and every answer names the network rule.
	e.MustDo(t, "PATCH", "/coffer/v1/vaults/locked", acls("None"), nil)
	body := p.waitHealth(t, 503, "bypass=None")
	if !strings.Contains(body, "network rules") {
		t.Fatalf("/healthz does not name the network rule: %s", body)
	}
	_, err := kc.Status(context.Background(), &kmsapi.StatusRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "network rules") || !strings.Contains(err.Error(), "bypass=None") {
		t.Fatalf("Status with bypass None: %v, want Unavailable naming the network rule", err)
	}
	if _, err := kc.Encrypt(context.Background(), &kmsapi.EncryptRequest{Plaintext: make([]byte, 32), Uid: "t"}); err == nil {
		t.Fatal("Encrypt with bypass None succeeded")
	}
	vaulttest.Eventually(t, 10*time.Second, "the cluster's pluginStatus names the network rule", func() error {
		if c := k.show(t, "c9"); c.PluginStatus == nil || c.PluginStatus.Healthz != "error" || !strings.Contains(c.PluginStatus.Error, "bypass=None") {
			return fmt.Errorf("plugin status %+v", c.PluginStatus)
		}
		return nil
	})

	// The bypass restored: healthy again, no restart.
	e.MustDo(t, "PATCH", "/coffer/v1/vaults/locked", acls("CofferServices"), nil)
	p.waitHealth(t, 200, "ok "+kid)
	api.mustRead(t, s1)
}

// keyGets counts the successful key gets in vault's audit trail by principal objectID after
// record seq.
func keyGets(t *testing.T, e *vaulttest.Env, vault, objectID string, seq int64) int {
	var out wire.List[wire.AuditRecord]
	e.MustDo(t, "GET", fmt.Sprintf("/coffer/v1/audit?vault=%s&after=%d&limit=10000", vault, seq), nil, &out)
	n := 0
	for _, r := range out.Value {
		if r.PrincipalID == objectID && r.Result == "success" && r.Operation == "KeyGet" {
			n++
		}
	}
	return n
}

// who is the object id of the test's administrator.
func who(t *testing.T, e *vaulttest.Env) string {
	var w wire.Whoami
	e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &w)
	return w.ID
}

// TestInProcessTwoClusters: one server serves two clusters, each on its own socket, as its own
// identity and key; /healthz lists both and each plugin's handler is under /clusters/NAME/.
func TestInProcessTwoClusters(t *testing.T) {
	k := newKMSEnv(t, "c7")
	sp8 := k.e.ServicePrincipal(t, "kms-c8")
	k.e.MustDo(t, "POST", "/coffer/v1/kms/clusters", wire.KMSClusterRequest{Name: "c8", KeyManagement: "PMK", Identity: sp8.ClientID}, nil)
	dir := t.TempDir()
	sock7, sock8 := filepath.Join(dir, "c7.sock"), filepath.Join(dir, "c8.sock")
	k.e.Inst.Stop()
	e := vaulttest.Start(t, func(c *config.Server) {
		c.DataDir = k.e.Inst.DataDir
		c.KMSPlugin.Sockets = []string{"unix://" + sock7 + "=c7", "unix://" + sock8 + "=c8"}
		c.KMSPlugin.SelfTestInterval = 500 * time.Millisecond
		c.KMSPlugin.HealthListen = "127.0.0.1:0"
	})
	health := "http://" + e.Inst.Server.KMSPluginHealthAddr()
	all := &plugin{health: health}
	all.waitHealth(t, 200, "c8: ok https://coffer-kms.")
	body := all.waitHealth(t, 200, "c7: ok https://coffer-kms.")
	if !strings.Contains(body, "/keys/kms-c7/") || !strings.Contains(body, "/keys/kms-c8/") {
		t.Fatalf("/healthz of two clusters: %q", body)
	}
	for cluster, sock := range map[string]string{"c7": sock7, "c8": sock8} {
		p := &plugin{socket: sock, health: health + "/clusters/" + cluster}
		kid := strings.TrimPrefix(p.waitHealth(t, 200, "ok https://"), "ok ")
		st, err := p.grpc(t).Status(context.Background(), &kmsapi.StatusRequest{})
		if err != nil || st.KeyId != kid || !strings.Contains(kid, "/keys/kms-"+cluster+"/") {
			t.Fatalf("Status on %s: %+v %v, want the key of %s (%s)", sock, st, err, cluster, kid)
		}
	}
}

// TestInProcessUnknownCluster: a cluster that is not configured on the server, or a socket
// entry that names none, fails the start with an error that says what to do.
func TestInProcessUnknownCluster(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "kms.sock")
	for _, tc := range []struct {
		cluster string
		sockets []string
		want    string
	}{
		{"nope", []string{"unix://" + sock}, "cluster nope is not configured on this server"},
		{"", []string{"unix://" + sock + "=nope"}, "cluster nope is not configured on this server"},
		{"", []string{"unix://" + sock}, "names no cluster"},
		{"c1", []string{"tcp://127.0.0.1:1"}, "want unix:///path"},
	} {
		cfg := config.Defaults()
		cfg.DataDir = t.TempDir()
		cfg.Listen = "127.0.0.1:0"
		cfg.KMSPlugin.Sockets, cfg.KMSPlugin.Cluster = tc.sockets, tc.cluster
		inst, err := servertest.StartConfig(cfg)
		if err == nil {
			inst.Stop()
			t.Fatalf("%v %q: the server started", tc.sockets, tc.cluster)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%v %q: %v, want %q", tc.sockets, tc.cluster, err, tc.want)
		}
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Fatalf("a refused start left %s: %v", sock, err)
		}
	}
}

// auditedAs tells whether vault's audit trail holds a successful wrap of principal objectID
// after record seq.
func auditedAs(t *testing.T, e *vaulttest.Env, vault, objectID string, seq int64) bool {
	var out wire.List[wire.AuditRecord]
	e.MustDo(t, "GET", fmt.Sprintf("/coffer/v1/audit?vault=%s&after=%d&limit=10000", vault, seq), nil, &out)
	for _, r := range out.Value {
		if r.PrincipalID == objectID && r.Result == "success" && strings.Contains(strings.ToLower(r.Operation), "wrap") {
			return true
		}
	}
	return false
}

func get(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
