package kmsplugin

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/kek/kektest"
)

type memKEKs struct{ m *kektest.Memory }

func (k memKEKs) KEK(context.Context, string) (kek.KEK, error) { return k.m, nil }

type settingsSource struct{ s Settings }

func (s *settingsSource) Settings(context.Context) (Settings, error) { return s.s, nil }
func (*settingsSource) Report(context.Context, Report) error         { return nil }

func newTestPlugin(t *testing.T) (*Plugin, *kektest.Memory, *settingsSource) {
	t.Helper()
	m := kektest.NewMemory("https://vault.test")
	if _, err := m.CreateKey("k8s", "RSA"); err != nil {
		t.Fatal(err)
	}
	src := &settingsSource{s: Settings{WriteKey: "https://vault.test/keys/k8s"}}
	p, err := New(Options{Source: src, KEKs: memKEKs{m}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p, m, src
}

// Encrypt answers the key_id Status reports; a rotation changes both at once; every version
// still decrypts.
func TestKeyIDFollowsRotation(t *testing.T) {
	ctx := context.Background()
	p, m, _ := newTestPlugin(t)
	st, err := p.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil || st.Version != "v2" || st.Healthz != "ok" || !strings.HasPrefix(st.KeyId, "https://vault.test/keys/k8s/") {
		t.Fatalf("Status: %+v %v", st, err)
	}
	seed := []byte("0123456789abcdef0123456789abcdef")
	e1, err := p.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed, Uid: "u1"})
	if err != nil || e1.KeyId != st.KeyId || len(e1.Ciphertext) > 1024 {
		t.Fatalf("Encrypt: key %s (Status %s), %d bytes, %v", e1.GetKeyId(), st.KeyId, len(e1.GetCiphertext()), err)
	}
	v2, _ := m.CreateKey("k8s", "RSA")
	if err := p.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	st2, _ := p.Status(ctx, &kmsapi.StatusRequest{})
	e2, _ := p.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed, Uid: "u2"})
	if st2.KeyId != v2 || e2.KeyId != v2 {
		t.Fatalf("after rotation Status %s, Encrypt %s, want %s", st2.KeyId, e2.KeyId, v2)
	}
	for _, e := range []*kmsapi.EncryptResponse{e1, e2} {
		d, err := p.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: e.Ciphertext, KeyId: e.KeyId, Uid: "u3"})
		if err != nil || string(d.Plaintext) != string(seed) {
			t.Fatalf("Decrypt under %s: %v", e.KeyId, err)
		}
	}
}

// An unknown key_id is refused without a vault call, and remembered.
func TestUnknownKeyIDNegativelyCached(t *testing.T) {
	ctx := context.Background()
	p, m, _ := newTestPlugin(t)
	st, _ := p.Status(ctx, &kmsapi.StatusRequest{})
	before := m.Calls("unwrapKey")
	bogusVersion := st.KeyId[:strings.LastIndex(st.KeyId, "/")] + "/ffff"
	for _, id := range []string{"https://other.test/keys/x/1", bogusVersion, "not a url"} {
		for range 100 {
			_, err := p.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: []byte{1}, KeyId: id})
			if status.Code(err) != codes.NotFound {
				t.Fatalf("Decrypt %q: %v", id, err)
			}
		}
	}
	if n := m.Calls("unwrapKey") - before; n > 1 {
		t.Fatalf("300 Decrypts of unknown key_ids made %d unwrap calls, want at most 1", n)
	}
}

// A failed self-test makes Status answer an error (not just a non-ok healthz); a passing one
// brings it back.
func TestStatusFollowsSelfTest(t *testing.T) {
	ctx := context.Background()
	p, m, _ := newTestPlugin(t)
	m.Deny("unwrapKey")
	if err := p.SelfTest(ctx); !errors.Is(err, kek.ErrForbidden) {
		t.Fatalf("self-test with unwrap denied: %v", err)
	}
	calls := m.Calls("wrapKey")
	if _, err := p.Status(ctx, &kmsapi.StatusRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Status after a failed self-test: %v, want Unavailable", err)
	}
	if m.Calls("wrapKey") != calls {
		t.Fatal("Status called the vault")
	}
	m.Allow("unwrapKey")
	if err := p.SelfTest(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Status(ctx, &kmsapi.StatusRequest{}); err != nil {
		t.Fatalf("Status after recovery: %v", err)
	}
}

// Decrypt-only keys of the settings still decrypt after the write key changed.
func TestDecryptOnlyKeys(t *testing.T) {
	ctx := context.Background()
	p, m, src := newTestPlugin(t)
	seed := make([]byte, 32)
	old, _ := p.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed})
	m.CreateKey("cmk", "RSA")
	src.s = Settings{WriteKey: "https://vault.test/keys/cmk", DecryptKeys: []string{"https://vault.test/keys/k8s"}}
	if err := p.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: old.Ciphertext, KeyId: old.KeyId}); err != nil {
		t.Fatalf("old key after the switch: %v", err)
	}
	src.s.DecryptKeys = nil
	p.Poll(ctx)
	if _, err := p.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: old.Ciphertext, KeyId: old.KeyId}); status.Code(err) != codes.NotFound {
		t.Fatalf("a key no longer in the settings: %v, want NotFound", err)
	}
}

func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "kms.sock")
	// A stale socket (its listener gone) is removed.
	l, _ := net.Listen("unix", sock)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := ListenUnix(sock)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	if fi, _ := os.Stat(sock); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	// A live one is refused, and so is a regular file.
	if _, err := ListenUnix(sock); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("live socket: %v", err)
	}
	l2.Close()
	f := filepath.Join(dir, "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := ListenUnix(f); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	for _, bad := range []string{"tcp://x", "unix://host/x", "relative"} {
		if _, err := SocketPath(bad); err == nil {
			t.Errorf("SocketPath(%q) accepted", bad)
		}
	}
	if _, err := ListenOps("0.0.0.0:0"); err == nil {
		t.Error("ListenOps on a public address accepted")
	}
}

// FuzzDecrypt feeds Decrypt key_ids and ciphertexts as read from etcd (which a storage-level
// attacker may have written): it never panics, and only the cluster's keys reach the vault.
func FuzzDecrypt(f *testing.F) {
	f.Add("https://vault.test/keys/k8s/0123", []byte{1, 2, 3})
	f.Add("https://vault.test/keys/k8s", []byte{0})
	f.Add("https://other.test/keys/k8s/1", []byte{})
	f.Add("http://vault.test/keys/K8S/../x", make([]byte, 2000))
	f.Add("", []byte("x"))
	m := kektest.NewMemory("https://vault.test")
	m.CreateKey("k8s", "RSA")
	p, err := New(Options{Source: &settingsSource{s: Settings{WriteKey: "https://vault.test/keys/k8s"}}, KEKs: memKEKs{m}})
	if err != nil {
		f.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, keyID string, ct []byte) {
		res, err := p.Decrypt(context.Background(), &kmsapi.DecryptRequest{KeyId: keyID, Ciphertext: ct})
		if err == nil && len(res.Plaintext) == 0 {
			t.Fatal("Decrypt succeeded with no plaintext")
		}
		if err == nil && !strings.HasPrefix(strings.ToLower(keyID), "https://vault.test/keys/k8s/") {
			t.Fatalf("key_id %q of another key decrypted", keyID)
		}
	})
}
