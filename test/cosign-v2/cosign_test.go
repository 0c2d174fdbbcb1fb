package cosignv2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/cosign/v2/cmd/cosign/cli/options"
	"github.com/sigstore/cosign/v2/cmd/cosign/cli/sign"
	"github.com/sigstore/cosign/v2/cmd/cosign/cli/verify"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore-go/pkg/root"
)

// identity is a registry user.
type identity struct{ name, password string }

var (
	setupOnce      sync.Once
	puller, signer identity // AcrPull and AcrPush at /registry
)

// identities creates, once, the pull-only identity images are pulled and verified with
// and the pusher that pushes and signs them (AcrPush: no Owner rights).
func identities(t *testing.T) {
	t.Helper()
	setupOnce.Do(func() {
		puller = identity{"puller", user(t, "puller", "AcrPull", "/registry")}
		signer = identity{"signer", user(t, "signer", "AcrPush", "/registry")}
	})
	if signer.name == "" {
		t.Fatal("the test identities were not created")
	}
}

// keyPair is a cosign key pair, written by cosign's own generator (pkg/cosign, what
// `cosign generate-key-pair` calls) as cosign.key (encrypted) and cosign.pub.
type keyPair struct{ key, pub string }

const keyPassword = "cosign-key-password"

func passFunc(bool) ([]byte, error) { return []byte(keyPassword), nil }

func newKeyPair(t *testing.T) keyPair {
	t.Helper()
	kb, err := cosign.GenerateKeyPair(passFunc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	k := keyPair{key: filepath.Join(dir, "cosign.key"), pub: filepath.Join(dir, "cosign.pub")}
	if err := os.WriteFile(k.key, kb.PrivateBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.pub, kb.PublicBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

// mode is one way cosign stores a signature.
type mode struct {
	name string // subtest, repository prefix and anchor name
	kind string // Coffer's signature kind for it
	// artifactType is the referrer's artifact type; "" for the sha256-<hex>.sig tag.
	artifactType string
	// sign and verify set the mode's cosign options (what the CLI flags set).
	sign   func(t *testing.T, ko *options.KeyOpts, so *options.SignOptions)
	verify func(vc *verify.VerifyCommand)
}

var modes = []mode{
	{name: "legacy", kind: "cosign", // cosign sign --key cosign.key --tlog-upload=false IMAGE
		sign: func(*testing.T, *options.KeyOpts, *options.SignOptions) {}, verify: func(*verify.VerifyCommand) {}},
	{name: "oci11", kind: "cosign-oci", artifactType: "application/vnd.dev.cosign.artifact.sig.v1+json",
		// COSIGN_EXPERIMENTAL=1 cosign sign ... --registry-referrers-mode=oci-1-1
		sign: func(_ *testing.T, _ *options.KeyOpts, so *options.SignOptions) {
			so.RegistryExperimental.RegistryReferrersMode = options.RegistryReferrersModeOCI11
		},
		// COSIGN_EXPERIMENTAL=1 cosign verify ... --experimental-oci11
		verify: func(vc *verify.VerifyCommand) { vc.ExperimentalOCI11 = true }},
	{name: "bundle", kind: "cosign-bundle", artifactType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		// cosign sign ... --new-bundle-format: cosign makes the bundle itself (cbundle.MakeNewBundle)
		sign: func(_ *testing.T, _ *options.KeyOpts, so *options.SignOptions) { so.NewBundleFormat = true },
		// cosign verify ... --new-bundle-format --trusted-root empty.json
		verify: func(vc *verify.VerifyCommand) { vc.NewBundleFormat = true }},
	{name: "bundle-sc", kind: "cosign-bundle", artifactType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		// cosign sign ... --new-bundle-format --signing-config sc.json --trusted-root tr.json,
		// with a signing config that names no service: sigstore-go's sign.Bundle signs
		sign: func(t *testing.T, ko *options.KeyOpts, so *options.SignOptions) {
			so.NewBundleFormat = true
			so.SigningConfigPath, so.TrustedRootPath = emptySigningConfig(t), emptyTrustedRoot(t)
			// What the sign command's RunE does with those two flags.
			var err error
			if ko.TrustedMaterial, err = root.NewTrustedRootFromPath(so.TrustedRootPath); err != nil {
				t.Fatal(err)
			}
			if ko.SigningConfig, err = root.NewSigningConfigFromPath(so.SigningConfigPath); err != nil {
				t.Fatal(err)
			}
		},
		verify: func(vc *verify.VerifyCommand) { vc.NewBundleFormat = true }},
}

// emptyTrustedRoot is a Sigstore trusted root with no log, CA or TSA: key-based,
// offline verification needs nothing else, and with it cosign does not go to the TUF
// repository for the public good instance's root.
func emptyTrustedRoot(t *testing.T) string {
	return writeFile(t, "trusted_root.json", `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)
}

// emptySigningConfig names no Fulcio, Rekor or TSA: a key-based bundle, no log.
func emptySigningConfig(t *testing.T) string {
	return writeFile(t, "signing_config.json", `{"mediaType":"application/vnd.dev.sigstore.signingconfig.v0.2+json"}`)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// registryOptions are cosign's registry flags: --registry-cacert, --registry-username,
// --registry-password. With rec, the same client options cosign derives from them
// (GetRegistryClientOpts), over a transport that records every request.
func registryOptions(as identity, rec *recorder) options.RegistryOptions {
	ro := options.RegistryOptions{RegistryCACert: srv.caFile, AuthConfig: authn.AuthConfig{Username: as.name, Password: as.password}}
	if rec != nil {
		ro.RegistryClientOpts = []remote.Option{remote.WithUserAgent(options.UserAgent()),
			remote.WithAuth(&authn.Basic{Username: as.name, Password: as.password}), remote.WithTransport(rec)}
	}
	return ro
}

// cosignSign is `cosign sign --key KEY --tlog-upload=false [mode flags] IMAGE@DIGEST` as
// identity as: cosign's own SignCmd.
func cosignSign(t *testing.T, m mode, k keyPair, img name.Digest, as identity, rec *recorder) error {
	t.Helper()
	ko := options.KeyOpts{KeyRef: k.key, PassFunc: passFunc, SkipConfirmation: true}
	so := options.SignOptions{Key: k.key, Upload: true, TlogUpload: false, SkipConfirmation: true, Registry: registryOptions(as, rec)}
	m.sign(t, &ko, &so)
	return sign.SignCmd(&options.RootOptions{Timeout: 2 * time.Minute}, ko, so, []string{img.String()})
}

// cosignVerify is `cosign verify --key cosign.pub --insecure-ignore-tlog --offline
// --trusted-root EMPTY [mode flags] IMAGE@DIGEST` as the puller: cosign's VerifyCommand.
func cosignVerify(t *testing.T, m mode, k keyPair, img name.Digest) error {
	t.Helper()
	vc := verify.VerifyCommand{
		RegistryOptions:     registryOptions(puller, nil),
		CommonVerifyOptions: options.CommonVerifyOptions{TrustedRootPath: emptyTrustedRoot(t)},
		KeyRef:              k.pub, CheckClaims: true, IgnoreTlog: true, Offline: true, IgnoreSCT: true, Output: "json",
	}
	m.verify(&vc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return vc.Exec(ctx, []string{img.String()})
}

func ggcrOptions(as identity) []remote.Option {
	return []remote.Option{remote.WithAuth(&authn.Basic{Username: as.name, Password: as.password}), remote.WithTransport(srv.tls)}
}

// push writes a random image to repo:tag as the signer and returns its digest reference.
func push(t *testing.T, repo, tag string) name.Digest {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(srv.host + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, ggcrOptions(signer)...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, _ := img.Digest()
	return ref.Context().Digest(d.String())
}

// pull reads the image as the puller: its manifest by digest (and its layers), a HEAD,
// and its manifest by tag. It returns the first failure.
func pull(img name.Digest, tag string) error {
	opts := ggcrOptions(puller)
	image, err := remote.Image(img, opts...)
	if err != nil {
		return err
	}
	layers, err := image.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	if _, err := remote.Head(img, opts...); err != nil {
		return err
	}
	_, err = remote.Image(img.Context().Tag(tag), opts...)
	return err
}

// wantRefused asserts that pulling img is answered 403 DENIED with a message that has
// every one of want.
func wantRefused(t *testing.T, img name.Digest, tag string, want ...string) {
	t.Helper()
	_, err := remote.Image(img, ggcrOptions(puller)...)
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusForbidden || len(te.Errors) == 0 || te.Errors[0].Code != transport.DeniedErrorCode {
		t.Fatalf("pull %s: %v, want 403 DENIED", img, err)
	}
	for _, w := range want {
		if !strings.Contains(te.Errors[0].Message, w) {
			t.Fatalf("pull %s refused with %q, want it to say %q", img, te.Errors[0].Message, w)
		}
	}
	if _, err := remote.Image(img.Context().Tag(tag), ggcrOptions(puller)...); !errors.As(err, &te) || te.StatusCode != http.StatusForbidden {
		t.Fatalf("pull by tag %s: %v, want 403", tag, err)
	}
	if _, err := remote.Head(img, ggcrOptions(puller)...); !errors.As(err, &te) || te.StatusCode != http.StatusForbidden {
		t.Fatalf("HEAD %s: %v, want 403", img, err)
	}
}

// verdict is Coffer's own judgement (`coffer registry signature verify -o json`).
type verdict struct {
	Signatures []string `json:"signatures"`
	Verified   bool     `json:"verified"`
	Kind       string   `json:"kind"`
	Anchor     string   `json:"anchor"`
	Reason     string   `json:"reason"`
}

func judge(t *testing.T, img name.Digest) verdict {
	t.Helper()
	var v verdict
	out := cli(t, "", "registry", "signature", "verify", img.RepositoryStr()+"@"+img.DigestStr(), "-o", "json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("verify -o json: %v\n%s", err, out)
	}
	return v
}

func setPolicy(t *testing.T, rules ...string) {
	t.Helper()
	cli(t, `{"repositories":[`+strings.Join(rules, ",")+`]}`, "registry", "signature", "policy", "set", "--file", "-")
}

// moveSignature copies the signature cosign made for from onto to, unchanged but for
// where it is attached: the .sig tag's manifest pushed under to's .sig tag, or the
// referrer manifest pushed again with to as its subject. Its payload still names from.
func moveSignature(t *testing.T, m mode, from, to name.Digest) {
	t.Helper()
	opts := ggcrOptions(signer)
	if m.artifactType == "" {
		desc, err := remote.Get(from.Context().Tag(strings.Replace(from.DigestStr(), ":", "-", 1)+".sig"), opts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Put(to.Context().Tag(strings.Replace(to.DigestStr(), ":", "-", 1)+".sig"), desc, opts...); err != nil {
			t.Fatal(err)
		}
		return
	}
	sig := referrer(t, m, from)
	desc, err := remote.Get(from.Context().Digest(sig.String()), opts...)
	if err != nil {
		t.Fatal(err)
	}
	var mf map[string]any
	if err := json.Unmarshal(desc.Manifest, &mf); err != nil {
		t.Fatal(err)
	}
	target, err := remote.Head(to, opts...)
	if err != nil {
		t.Fatal(err)
	}
	mf["subject"] = map[string]any{"mediaType": target.MediaType, "digest": target.Digest.String(), "size": target.Size}
	raw, _ := json.Marshal(mf)
	h, _, _ := v1.SHA256(bytes.NewReader(raw))
	if err := remote.Put(to.Context().Digest(h.String()), rawManifest{raw, desc.MediaType}, opts...); err != nil {
		t.Fatal(err)
	}
}

// referrer is the digest of the mode's signature referrer of img (there must be one).
func referrer(t *testing.T, m mode, img name.Digest) v1.Hash {
	t.Helper()
	idx, err := remote.Referrers(img, ggcrOptions(puller)...)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var found []v1.Hash
	for _, d := range im.Manifests {
		if d.ArtifactType == m.artifactType {
			found = append(found, d.Digest)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s has %d referrers of type %s, want 1: %+v", img, len(found), m.artifactType, im.Manifests)
	}
	return found[0]
}

type rawManifest struct {
	body []byte
	mt   types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.body, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// TestCosignSignaturesUnderEnforce signs with cosign v2's own sign command in each of the
// ways it stores a signature, then puts the repositories under enforce with the cosign
// public key as the only anchor: the signed image pulls (and cosign's own verify passes
// against Coffer); an unsigned one, one signed by another key and one carrying a
// signature made for another image are refused with the reason; removing the anchor
// refuses the signed one too.
func TestCosignSignaturesUnderEnforce(t *testing.T) {
	identities(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			repo := m.name + "/app"
			trusted, other := newKeyPair(t), newKeyPair(t)
			signed, unsigned := push(t, repo, "signed"), push(t, repo, "unsigned")
			byOther, moved := push(t, repo, "other"), push(t, repo, "moved")
			for _, s := range []struct {
				k   keyPair
				img name.Digest
			}{{trusted, signed}, {other, byOther}} {
				if err := cosignSign(t, m, s.k, s.img, signer, nil); err != nil {
					t.Fatalf("cosign sign %s: %v", s.img, err)
				}
			}
			if m.artifactType != "" {
				referrer(t, m, signed) // stored as the referrer this mode makes, nothing else
			}
			moveSignature(t, m, signed, moved)
			// cosign itself refuses the moved signature: it names the other image.
			if err := cosignVerify(t, m, trusted, moved); err == nil {
				t.Fatal("cosign verify accepted a signature made for another image")
			}

			cli(t, "", "registry", "signature", "anchor", "add", m.name, "--kind", "cosign", "--file", trusted.pub)
			setPolicy(t, fmt.Sprintf(`{"scope":%q,"mode":"enforce","kinds":[%q]}`, m.name+"/*", m.kind))

			if err := pull(signed, "signed"); err != nil {
				t.Fatalf("pull of the signed image under enforce: %v", err)
			}
			if v := judge(t, signed); !v.Verified || v.Kind != m.kind || v.Anchor != m.name {
				t.Fatalf("verdict on the signed image: %+v, want verified as %s by anchor %s", v, m.kind, m.name)
			}
			if err := cosignVerify(t, m, trusted, signed); err != nil {
				t.Fatalf("cosign verify against Coffer: %v", err)
			}
			wantRefused(t, unsigned, "unsigned", `signature policy "`+m.name+`/*" (mode enforce)`, "no signature")
			wantRefused(t, byOther, "other", "signature by an untrusted key")
			if v := judge(t, byOther); v.Verified || !slices.Contains(v.Signatures, m.kind) {
				t.Fatalf("verdict on the image signed by another key: %+v", v)
			}
			wantRefused(t, moved, "moved", "digest mismatch")

			cli(t, "", "registry", "signature", "anchor", "delete", m.name)
			wantRefused(t, signed, "signed", "signature by an untrusted key")
			setPolicy(t)
		})
	}
}

// recorder records the registry requests cosign makes.
type recorder struct {
	mu   sync.Mutex
	reqs []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := srv.tls.RoundTrip(req)
	if strings.HasPrefix(req.URL.Path, "/v2/") && req.URL.Path != "/v2/" {
		line := req.Method + " " + req.URL.Path
		if resp != nil {
			line += fmt.Sprintf(" %d", resp.StatusCode)
		}
		r.mu.Lock()
		r.reqs = append(r.reqs, line)
		r.mu.Unlock()
	}
	return resp, err
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// TestSignWhileEnforced finds out what cosign sign reads of an image already under
// enforce, as a signer with push rights (AcrPush) and no exemption: it GETs the image
// manifest (ociremote.SignedEntity) before it signs, in every mode. Under the default
// publishers "head" that GET is refused and cosign signs nothing; with publishers "read"
// it signs, and the signature pushed after the policy was set is honoured at once.
func TestSignWhileEnforced(t *testing.T) {
	identities(t)
	k := newKeyPair(t)
	cli(t, "", "registry", "signature", "anchor", "add", "enforced", "--kind", "cosign", "--file", k.pub)
	defer cli(t, "", "registry", "signature", "anchor", "delete", "enforced")
	defer setPolicy(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			repo := "enforced/" + m.name
			img := push(t, repo, "v1")
			manifestGET := "GET /v2/" + repo + "/manifests/" + img.DigestStr()

			setPolicy(t, `{"scope":"enforced/*","mode":"enforce"}`)
			rec := &recorder{}
			err := cosignSign(t, m, k, img, signer, rec)
			if err == nil || !strings.Contains(err.Error(), "no signature") {
				t.Fatalf("cosign sign of an enforced image under publishers head: %v, want the refusal", err)
			}
			reqs := rec.requests()
			t.Logf("publishers head: %v", reqs)
			if len(reqs) == 0 || reqs[0] != manifestGET+" 403" {
				t.Fatalf("cosign's requests: %v, want %s first, refused", reqs, manifestGET)
			}
			for _, r := range reqs {
				if strings.HasPrefix(r, "PUT ") || strings.HasPrefix(r, "POST ") {
					t.Fatalf("cosign wrote after the refused GET: %v", reqs)
				}
			}
			wantRefused(t, img, "v1", "no signature")

			setPolicy(t, `{"scope":"enforced/*","mode":"enforce","publishers":"read"}`)
			rec = &recorder{}
			if err := cosignSign(t, m, k, img, signer, rec); err != nil {
				t.Fatalf("cosign sign under publishers read: %v", err)
			}
			reqs = rec.requests()
			t.Logf("publishers read: %v", reqs)
			if len(reqs) == 0 || reqs[0] != manifestGET+" 200" {
				t.Fatalf("cosign's requests: %v, want %s first", reqs, manifestGET)
			}
			if slices.ContainsFunc(reqs, func(r string) bool { return strings.HasPrefix(r, "HEAD /v2/"+repo+"/manifests/"+img.DigestStr()) }) {
				t.Logf("cosign also HEADs the image manifest")
			}
			if err := pull(img, "v1"); err != nil {
				t.Fatalf("pull after signing under enforce, no restart: %v", err)
			}
		})
	}
}
