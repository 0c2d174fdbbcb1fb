package imagecrypt_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/cofferhq/coffer/internal/imagecrypt"
	"github.com/cofferhq/coffer/internal/imagecrypt/keyprovider"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// cli runs the coffer binary as a process with a private HOME and configuration directory
// and none of the caller's COFFER_*, AZURE_* or DOCKER_* variables.
type cli struct {
	bin string
	env []string
	dir string // COFFER_CONFIG_DIR
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	home := t.TempDir()
	c := &cli{bin: servertest.Binary(t), dir: filepath.Join(home, "coffer")}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "COFFER_") || strings.HasPrefix(kv, "AZURE_") || strings.HasPrefix(kv, "DOCKER_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		c.env = append(c.env, kv)
	}
	c.env = append(c.env, "HOME="+home, "COFFER_CONFIG_DIR="+c.dir, "DOCKER_CONFIG="+filepath.Join(home, "docker"))
	return c
}

// run runs coffer args with stdin and extra environment; it returns stdout, stderr and the
// exit code.
func (c *cli) run(t *testing.T, stdin string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(append([]string{}, c.env...), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run coffer %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// ok runs coffer and fails the test unless it exits 0; it decodes -o json output into out.
func (c *cli) ok(t *testing.T, out any, env []string, args ...string) {
	t.Helper()
	stdout, stderr, code := c.run(t, "", env, args...)
	if code != 0 {
		t.Fatalf("coffer %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(stdout), out); err != nil {
			t.Fatalf("coffer %s -o json: %v: %s", strings.Join(args, " "), err, stdout)
		}
	}
}

func (e *env) azureEnv(p vaulttest.Principal) []string {
	return []string{"AZURE_TENANT_ID=" + e.TenantID, "AZURE_CLIENT_ID=" + p.ClientID, "AZURE_CLIENT_SECRET=" + p.Secret,
		"AZURE_AUTHORITY_HOST=" + e.Inst.URL + "/", "COFFER_CA_FILE=" + e.Inst.CAFile}
}

// TestCLIImageWithLogin drives `coffer login` and `coffer image encrypt|inspect|decrypt` as
// processes: the registry credential comes from the refresh token that login saved (no
// --creds, no password in the environment).
func TestCLIImageWithLogin(t *testing.T) {
	e := newEnv(t)
	c := newCLI(t)
	src := testImage(t, filepath.Join(e.dir, "src"), "v1", 2, 64<<10)
	dst := e.reg("team/app:enc")

	// Before login, the registry refuses the push.
	if _, stderr, code := c.run(t, "", []string{"COFFER_CA_FILE=" + e.Inst.CAFile}, "image", "encrypt", src, dst, "--recipient", "jwe:"+e.pubPEM); code == 0 {
		t.Fatal("encrypt to the registry without any credential succeeded")
	} else if !strings.Contains(stderr, "error:") {
		t.Fatalf("no error message: %q", stderr)
	}

	var login struct {
		Server             string `json:"server"`
		Username           string `json:"username"`
		RegistryCredential bool   `json:"registryCredential"`
	}
	stdout, stderr, code := c.run(t, e.Inst.AdminPassword, nil, "login", e.Inst.URL, "-u", "admin", "--password-stdin", "--ca-file", e.Inst.CAFile, "-o", "json")
	if code != 0 {
		t.Fatalf("login: exit %d: %s", code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &login); err != nil || login.Username != "admin" || !login.RegistryCredential {
		t.Fatalf("login -o json = %s (%v)", stdout, err)
	}
	credPath := filepath.Join(c.dir, "credentials.json")
	fi, err := os.Stat(credPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file %s: %v %v, want mode 0600", credPath, fi, err)
	}
	var saved struct {
		RefreshToken         string `json:"refreshToken"`
		RegistryRefreshToken string `json:"registryRefreshToken"`
	}
	raw, _ := os.ReadFile(credPath)
	json.Unmarshal(raw, &saved)
	if saved.RegistryRefreshToken == "" || saved.RegistryRefreshToken == saved.RefreshToken {
		t.Fatalf("login saved no registry refresh token of its own: %s", raw)
	}

	// encrypt: to the registry with the saved credential.
	var enc imagecrypt.Result
	c.ok(t, &enc, nil, "image", "encrypt", src, dst, "--recipient", "jwe:"+e.pubPEM, "-o", "json")
	if enc.Destination == "" || len(enc.Images) != 1 || len(enc.Images[0].Layers) != 2 || enc.Digest == "" {
		t.Fatalf("encrypt -o json = %+v", enc)
	}
	for _, l := range enc.Images[0].Layers {
		if !l.Encrypted || !l.Changed || !strings.HasSuffix(l.MediaType, "+encrypted") || strings.Join(l.Schemes, ",") != "jwe" {
			t.Fatalf("encrypted layer reported as %+v", l)
		}
	}

	// inspect: per layer, encrypted with jwe; the note on signatures.
	var ins inspectJSON
	c.ok(t, &ins, nil, "image", "inspect", dst, "-o", "json")
	if len(ins.Images) != 1 || len(ins.Images[0].Layers) != 2 || ins.Images[0].Layers[0].Encrypted != true || len(ins.Images[0].Layers[0].Recipients) == 0 {
		t.Fatalf("inspect -o json = %+v", ins)
	}
	checkInspectSignatures(t, ins, false)
	if !strings.Contains(mustRun(t, c, "image", "inspect", dst), "Signatures: none") {
		t.Fatal("inspect's table does not say the image is unsigned")
	}
	pushSignatureReferrer(t, e, "team/app", ins.Digest)
	c.ok(t, &ins, nil, "image", "inspect", dst, "-o", "json")
	checkInspectSignatures(t, ins, true)
	if got := strings.Join(ins.Signatures.Kinds, ","); got != "notation" {
		t.Fatalf("signature kinds %q, want notation", got)
	}
	table, _, code := c.run(t, "", nil, "image", "inspect", dst)
	if code != 0 || !strings.Contains(table, "ENCRYPTED") || !strings.Contains(table, "true") {
		t.Fatalf("inspect table (exit %d):\n%s", code, table)
	}

	// The registry knows: tag list counts the encrypted layers, repo show says the
	// repository holds client-encrypted images (management calls with login's token).
	var tags []wire.Tag
	c.ok(t, &tags, nil, "registry", "tag", "list", "team/app", "-o", "json")
	if len(tags) != 1 || tags[0].Name != "enc" || tags[0].EncryptedLayers != 2 {
		t.Fatalf("tag list -o json = %+v", tags)
	}
	if table := mustRun(t, c, "registry", "tag", "list", "team/app"); !strings.Contains(table, "ENCRYPTED LAYERS") {
		t.Fatalf("tag list table:\n%s", table)
	}
	var repo wire.Repository
	c.ok(t, &repo, nil, "registry", "repo", "show", "team/app", "-o", "json")
	if repo.ClientEncrypted == nil || !*repo.ClientEncrypted || repo.EncryptedTags != 1 {
		t.Fatalf("repo show -o json = %+v", repo)
	}
	if table := mustRun(t, c, "registry", "repo", "show", "team/app"); !strings.Contains(table, "CLIENT-ENCRYPTED") || !strings.Contains(table, "yes (1 tags)") {
		t.Fatalf("repo show table:\n%s", table)
	}
	// A plain image: not client-encrypted.
	c.ok(t, nil, []string{"COFFER_USERNAME=admin", "COFFER_PASSWORD=" + e.Inst.AdminPassword}, "image", "decrypt", src, e.reg("team/plain:v1"))
	var plain wire.Repository
	c.ok(t, &plain, nil, "registry", "repo", "show", "team/plain", "-o", "json")
	if plain.ClientEncrypted == nil || *plain.ClientEncrypted || plain.EncryptedTags != 0 {
		t.Fatalf("repo show of a plain repository = %+v", plain)
	}

	// decrypt without the right key: the seed's message, naming the layer, nothing written.
	other := filepath.Join(e.dir, "other.pem")
	otherKey(t, other)
	outDir := filepath.Join(e.dir, "out")
	_, stderr, code = c.run(t, "", nil, "image", "decrypt", dst, "oci:"+outDir+":v1", "--key", other)
	if code != 1 || !strings.Contains(stderr, "missing private key needed for decryption") || !strings.Contains(stderr, "layer ") {
		t.Fatalf("decrypt with a wrong key: exit %d, %q", code, stderr)
	}
	if _, _, code = c.run(t, "", nil, "image", "decrypt", dst, "oci:"+outDir+":v1"); code != 1 {
		t.Fatalf("decrypt with no key: exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(outDir, "index.json")); err == nil {
		t.Fatal("a refused decryption wrote an image")
	}

	// decrypt through the vault as the node: identical to the source.
	var dec imagecrypt.Result
	c.ok(t, &dec, e.azureEnv(e.node), "image", "decrypt", dst, "oci:"+outDir+":v1", "--key", "vault:"+e.keyURL, "-o", "json")
	if len(dec.Images) != 1 || dec.Images[0].Layers[0].Encrypted || !dec.Images[0].Layers[0].Changed {
		t.Fatalf("decrypt -o json = %+v", dec)
	}
	sameLayers(t, readLayout(t, src), readLayout(t, "oci:"+outDir+":v1"))

	// A bad reference is a usage error with a message.
	if _, stderr, code := c.run(t, "", nil, "image", "inspect", "ftp://x"); code != 1 || !strings.Contains(stderr, "unknown transport") {
		t.Fatalf("inspect ftp://x: exit %d %q", code, stderr)
	}

	// After logout the saved registry token is revoked: the server refuses it.
	c.ok(t, nil, nil, "logout")
	if _, _, code := c.run(t, "", nil, "image", "inspect", dst); code == 0 {
		t.Fatal("inspect after logout succeeded without credentials")
	}
}

// inspectJSON is `coffer image inspect -o json`.
type inspectJSON = imagecrypt.Result

func checkInspectSignatures(t *testing.T, ins inspectJSON, signed bool) {
	t.Helper()
	if ins.Signatures == nil {
		t.Fatalf("inspect of a registry image has no signatures field: %+v", ins)
	}
	if (ins.Signatures.Count > 0) != signed || !strings.Contains(ins.Signatures.Note, "encryption proves nothing about who built") {
		t.Fatalf("inspect signatures = %+v, want signed=%v", *ins.Signatures, signed)
	}
}

// TestCLIKeyProviderCommand runs `coffer keyprovider` as ocicrypt's command transport does:
// one JSON request on stdin, the answer on stdout, a failure as a non-zero exit.
func TestCLIKeyProviderCommand(t *testing.T) {
	e := newEnv(t)
	c := newCLI(t)
	publisher := e.ServicePrincipal(t, "publisher")
	e.SetPolicy(t, "images", publisher.ObjectID, "get", "wrapKey")
	stranger := e.ServicePrincipal(t, "stranger")
	e.SetPolicy(t, "images", stranger.ObjectID, "get")
	conf := func(name string, p vaulttest.Principal) string {
		raw, _ := json.Marshal(keyprovider.Config{TenantID: e.TenantID, ClientID: p.ClientID, ClientSecret: p.Secret, AuthorityHost: e.Inst.URL + "/", CAFile: e.Inst.CAFile})
		path := filepath.Join(e.dir, name+".json")
		writeFile(t, path, raw)
		return path
	}
	opts := []byte(`{"symkey":"c2VjcmV0","cipheroptions":{},"digest":"sha256:00"}`)
	wrapReq, _ := json.Marshal(map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
		"ec": map[string]any{"Parameters": map[string]any{keyprovider.Name: [][]byte{[]byte(e.keyURL)}}}, "optsdata": opts}})
	stdout, stderr, code := c.run(t, string(wrapReq), nil, "keyprovider", "--config", conf("publisher", publisher))
	if code != 0 {
		t.Fatalf("keywrap: exit %d: %s", code, stderr)
	}
	var wrapped struct {
		KeyWrapResults struct {
			Annotation []byte `json:"annotation"`
		} `json:"keywrapresults"`
	}
	if err := json.Unmarshal([]byte(stdout), &wrapped); err != nil || len(wrapped.KeyWrapResults.Annotation) == 0 {
		t.Fatalf("keywrap answer %q: %v", stdout, err)
	}
	if bytes.Contains(wrapped.KeyWrapResults.Annotation, opts) {
		t.Fatal("the annotation holds the private options in clear")
	}
	// The request ocicrypt sends carries a DecryptConfig (other schemes' private keys):
	// the provider takes it and answers.
	unwrapReq, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc":         map[string]any{"Parameters": map[string]any{"privkeys": [][]byte{[]byte("NOT-FOR-THE-PROVIDER")}}},
		"annotation": wrapped.KeyWrapResults.Annotation}})
	stdout, stderr, code = c.run(t, string(unwrapReq), nil, "keyprovider", "--config", conf("node", e.node))
	if code != 0 {
		t.Fatalf("keyunwrap as the node: exit %d: %s", code, stderr)
	}
	var unwrapped struct {
		KeyUnwrapResults struct {
			OptsData []byte `json:"optsdata"`
		} `json:"keyunwrapresults"`
	}
	if err := json.Unmarshal([]byte(stdout), &unwrapped); err != nil || !bytes.Equal(unwrapped.KeyUnwrapResults.OptsData, opts) {
		t.Fatalf("keyunwrap answer %q: %v", stdout, err)
	}
	if strings.Contains(stdout+stderr, "NOT-FOR-THE-PROVIDER") || strings.Contains(stdout+stderr, base64.StdEncoding.EncodeToString([]byte("NOT-FOR-THE-PROVIDER"))) {
		t.Fatal("the provider echoed the DecryptConfig")
	}

	// An identity without unwrapKey is refused, with a message that says what it lacks.
	stdout, stderr, code = c.run(t, string(unwrapReq), nil, "keyprovider", "--config", conf("stranger", stranger))
	if code != 1 || stdout != "" || !strings.Contains(stderr, "unwrapKey permission") {
		t.Fatalf("keyunwrap as a stranger: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Not a request; no config.
	if _, stderr, code := c.run(t, "{not json", nil, "keyprovider", "--config", conf("node", e.node)); code != 1 || !strings.Contains(stderr, "not an ocicrypt key provider request") {
		t.Fatalf("garbage request: exit %d %q", code, stderr)
	}
	if _, stderr, code := c.run(t, string(unwrapReq), nil, "keyprovider"); code != 1 || !strings.Contains(stderr, "--config") {
		t.Fatalf("no --config: exit %d %q", code, stderr)
	}
	// `keyprovider config` prints the OCICRYPT_KEYPROVIDER_CONFIG JSON.
	var oc struct {
		KeyProviders map[string]struct {
			Cmd *struct {
				Path string   `json:"path"`
				Args []string `json:"args"`
			} `json:"cmd"`
		} `json:"key-providers"`
	}
	c.ok(t, &oc, nil, "keyprovider", "config", "--command", c.bin, "--config", "/etc/coffer/kp.json")
	if p := oc.KeyProviders[keyprovider.Name]; p.Cmd == nil || p.Cmd.Path != c.bin || strings.Join(p.Cmd.Args, " ") != "keyprovider --config /etc/coffer/kp.json" {
		t.Fatalf("keyprovider config = %+v", oc)
	}
}

func mustRun(t *testing.T, c *cli, args ...string) string {
	t.Helper()
	out, stderr, code := c.run(t, "", nil, args...)
	if code != 0 {
		t.Fatalf("coffer %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	return out
}

// pushSignatureReferrer pushes, with oras, an artifact of notation's signature type whose
// subject is the manifest dgst (a referrer: what inspect counts).
func pushSignatureReferrer(t *testing.T, e *env, repoName string, dgst digest.Digest) {
	t.Helper()
	ctx := context.Background()
	repo, err := remote.NewRepository(e.Inst.Addr + "/" + repoName)
	if err != nil {
		t.Fatal(err)
	}
	o := e.opts(t, e.node)
	repo.Client = &auth.Client{Client: o.Registry.HTTPClient, Credential: o.Registry.Credential, Cache: auth.NewCache()}
	subject, err := repo.Resolve(ctx, dgst.String())
	if err != nil {
		t.Fatal(err)
	}
	sig := []byte("not a real envelope")
	blob := content.NewDescriptorFromBytes("application/jose+json", sig)
	if err := repo.Push(ctx, blob, bytes.NewReader(sig)); err != nil {
		t.Fatal(err)
	}
	if _, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "application/vnd.cncf.notary.signature",
		oras.PackManifestOptions{Subject: &subject, Layers: []ocispec.Descriptor{blob}}); err != nil {
		t.Fatalf("push the signature referrer: %v", err)
	}
}
