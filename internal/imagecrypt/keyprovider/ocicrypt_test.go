package keyprovider_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containers/ocicrypt"
	encconfig "github.com/containers/ocicrypt/config"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cofferhq/coffer/internal/imagecrypt/keyprovider"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// The test binary plays two more parts, chosen by its first argument, so that ocicrypt
// reads OCICRYPT_KEYPROVIDER_CONFIG afresh (it reads it once per process, at init):
//   - asCommand: Coffer's key provider as ocicrypt's command transport runs it;
//   - asOcicrypt: an ocicrypt client (the library skopeo, CRI-O and imgcrypt link)
//     encrypting or decrypting a layer with provider:coffer.
const (
	asCommand  = "coffer-keyprovider-command"
	asOcicrypt = "coffer-ocicrypt-client"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == asCommand {
		os.Exit(runCommand(os.Args[2]))
	}
	if len(os.Args) > 3 && os.Args[1] == asOcicrypt {
		os.Exit(runOcicrypt(os.Args[2], os.Args[3], os.Args[4:]...))
	}
	os.Exit(m.Run())
}

func runCommand(config string) int {
	c, err := keyprovider.LoadConfig(config)
	if err == nil {
		err = keyprovider.Command(context.Background(), keyprovider.New(c.Resolver(), c.Identity()), os.Stdin, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// runOcicrypt encrypts dir/plain to provider:coffer:KEY-URL (op "encrypt") or decrypts
// dir/enc with provider:coffer (op "decrypt") with ocicrypt's own EncryptLayer/DecryptLayer.
func runOcicrypt(op, dir string, args ...string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	switch op {
	case "encrypt":
		plain, _ := os.ReadFile(filepath.Join(dir, "plain"))
		cc, err := encconfig.EncryptWithKeyProvider([][]byte{[]byte("coffer:" + args[0])})
		if err != nil {
			return fail(err)
		}
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(plain), Size: int64(len(plain))}
		r, fin, err := ocicrypt.EncryptLayer(cc.EncryptConfig, bytes.NewReader(plain), desc)
		if err != nil {
			return fail(err)
		}
		enc, err := io.ReadAll(r)
		if err != nil {
			return fail(err)
		}
		ann, err := fin()
		if err != nil {
			return fail(err)
		}
		desc.Annotations = ann
		raw, _ := json.Marshal(desc)
		os.WriteFile(filepath.Join(dir, "enc"), enc, 0o600)
		os.WriteFile(filepath.Join(dir, "desc.json"), raw, 0o600)
	case "decrypt":
		enc, _ := os.ReadFile(filepath.Join(dir, "enc"))
		var desc ocispec.Descriptor
		raw, _ := os.ReadFile(filepath.Join(dir, "desc.json"))
		json.Unmarshal(raw, &desc)
		cc, err := encconfig.DecryptWithKeyProvider([][]byte{[]byte("coffer")})
		if err != nil {
			return fail(err)
		}
		r, _, err := ocicrypt.DecryptLayer(cc.DecryptConfig, bytes.NewReader(enc), desc, false)
		if err != nil {
			return fail(err)
		}
		plain, err := io.ReadAll(r)
		if err != nil {
			return fail(err)
		}
		os.WriteFile(filepath.Join(dir, "dec"), plain, 0o600)
	}
	return 0
}

type fixture struct {
	*vaulttest.Env
	dir    string
	keyURL string
	ids    map[string]vaulttest.Principal
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{Env: vaulttest.Start(t, nil), dir: t.TempDir(), ids: map[string]vaulttest.Principal{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	v := f.CreateVault(t, "images", map[string]any{"port": port})
	var who struct {
		ID string `json:"id"`
	}
	f.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	f.SetPolicy(t, "images", who.ID, "get", "create")
	var k wire.Key
	f.MustDo(t, "POST", "/coffer/v1/vaults/images/keys/layers/create", map[string]any{"kty": "RSA", "size": 2048}, &k)
	f.keyURL = v.VaultURI + "/keys/layers"
	for name, perms := range map[string][]string{"publisher": {"get", "wrapKey"}, "node": {"get", "unwrapKey"}, "stranger": {"get"}} {
		p := f.ServicePrincipal(t, name)
		f.SetPolicy(t, "images", p.ObjectID, perms...)
		f.ids[name] = p
		c := keyprovider.Config{TenantID: f.TenantID, ClientID: p.ClientID, ClientSecret: p.Secret, AuthorityHost: f.Inst.URL + "/", CAFile: f.Inst.CAFile}
		raw, _ := json.Marshal(c)
		writeFile(t, filepath.Join(f.dir, name+".json"), raw)
	}
	return f
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// transport writes the OCICRYPT_KEYPROVIDER_CONFIG for identity name and returns its path.
type transport func(t *testing.T, f *fixture, name string) string

func commandTransport(t *testing.T, f *fixture, name string) string {
	self, _ := os.Executable()
	raw, err := keyprovider.OcicryptConfig([]string{self, asCommand, filepath.Join(f.dir, name+".json")}, "")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(f.dir, "ocicrypt-cmd-"+name+".json")
	writeFile(t, p, raw)
	return p
}

func grpcTransport(t *testing.T, f *fixture, name string) string {
	sockDir, err := os.MkdirTemp("", "kp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "kp.sock")
	c, err := keyprovider.LoadConfig(filepath.Join(f.dir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := keyprovider.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- keyprovider.New(c.Resolver(), c.Identity()).Serve(ctx, ln, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	raw, err := keyprovider.OcicryptConfig(nil, "unix://"+sock)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(f.dir, "ocicrypt-grpc-"+name+".json")
	writeFile(t, p, raw)
	return p
}

// ocicryptClient runs the ocicrypt client subprocess with the provider config.
func ocicryptClient(t *testing.T, config, op, dir string, args ...string) (string, error) {
	self, _ := os.Executable()
	cmd := exec.Command(self, append([]string{asOcicrypt, op, dir}, args...)...)
	cmd.Env = append(os.Environ(), "OCICRYPT_KEYPROVIDER_CONFIG="+config)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (f *fixture) unwraps(t *testing.T, objectID string) int {
	var out wire.List[wire.AuditRecord]
	f.MustDo(t, "GET", "/coffer/v1/audit?vault=images&operation=KeyUnwrapKey&result=success", nil, &out)
	n := 0
	for _, r := range out.Value {
		if r.PrincipalID == objectID {
			n++
		}
	}
	return n
}

// TestDrivenByOcicrypt: the ocicrypt library, configured through OCICRYPT_KEYPROVIDER_CONFIG
// with the command and with the gRPC transport, encrypts a layer with provider:coffer as a
// publisher identity; a node identity holding unwrapKey decrypts it (one audited unwrap by
// the node), one without it is refused, and the node is refused once its access is removed.
func TestDrivenByOcicrypt(t *testing.T) {
	f := newFixture(t)
	for name, tr := range map[string]transport{"command": commandTransport, "grpc": grpcTransport} {
		t.Run(name, func(t *testing.T) {
			f.SetPolicy(t, "images", f.ids["node"].ObjectID, "get", "unwrapKey")
			dir := filepath.Join(f.dir, name)
			os.MkdirAll(dir, 0o700)
			plain := make([]byte, 1<<20)
			rand.Read(plain)
			writeFile(t, filepath.Join(dir, "plain"), plain)
			if out, err := ocicryptClient(t, tr(t, f, "publisher"), "encrypt", dir, f.keyURL); err != nil {
				t.Fatalf("encrypt: %v\n%s", err, out)
			}
			var desc ocispec.Descriptor
			raw, _ := os.ReadFile(filepath.Join(dir, "desc.json"))
			json.Unmarshal(raw, &desc)
			ann := desc.Annotations["org.opencontainers.image.enc.keys.provider.coffer"]
			if ann == "" {
				t.Fatalf("no provider annotation: %v", desc.Annotations)
			}

			node := tr(t, f, "node")
			before := f.unwraps(t, f.ids["node"].ObjectID)
			if out, err := ocicryptClient(t, node, "decrypt", dir); err != nil {
				t.Fatalf("decrypt as the node: %v\n%s", err, out)
			}
			if got, _ := os.ReadFile(filepath.Join(dir, "dec")); !bytes.Equal(got, plain) {
				t.Fatal("the node decrypted something else")
			}
			if n := f.unwraps(t, f.ids["node"].ObjectID) - before; n != 1 {
				t.Fatalf("%d unwraps by the node for one layer, want 1", n)
			}

			os.Remove(filepath.Join(dir, "dec"))
			out, err := ocicryptClient(t, tr(t, f, "stranger"), "decrypt", dir)
			if err == nil || !strings.Contains(out, "unwrapKey") {
				t.Fatalf("decrypt as an identity without unwrapKey: %v\n%s", err, out)
			}
			f.MustDo(t, "DELETE", "/coffer/v1/vaults/images/access-policies/"+f.ids["node"].ObjectID, nil, nil)
			out, err = ocicryptClient(t, node, "decrypt", dir)
			if err == nil || !strings.Contains(out, "unwrapKey") {
				t.Fatalf("decrypt after the node's access was removed: %v\n%s", err, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "dec")); err == nil {
				t.Fatal("a refused decryption wrote plaintext")
			}
		})
	}
}
