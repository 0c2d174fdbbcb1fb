package trustapi_test

import (
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/docker/distribution/registry/client/auth"
	"github.com/docker/distribution/registry/client/auth/challenge"
	"github.com/docker/distribution/registry/client/transport"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/theupdateframework/notary"
	"github.com/theupdateframework/notary/client"
	"github.com/theupdateframework/notary/passphrase"
	"github.com/theupdateframework/notary/trustpinning"
	"github.com/theupdateframework/notary/tuf/data"
)

// dockerCreds is the docker CLI's credential store for the token handler: basic
// credentials and the refresh token the token endpoint may hand back.
type dockerCreds struct{ user, pass string }

func (c dockerCreds) Basic(*url.URL) (string, string)          { return c.user, c.pass }
func (c dockerCreds) RefreshToken(*url.URL, string) string     { return "" }
func (c dockerCreds) SetRefreshToken(*url.URL, string, string) {}
func (c dockerCreds) String() string                           { return c.user }

// dockerRepo opens the trusted collection gun the way the docker CLI does
// (cli/trust.GetNotaryRepository): ping /v2/ for the challenge, a token handler asking
// repository:<gun>:<actions> at the registry's token endpoint, a basic fallback, and a
// file-cached notary repository over that transport.
func dockerRepo(t *testing.T, e *env, repoName, user, pass string, actions ...string) client.Repository {
	t.Helper()
	gun := e.gun(repoName)
	repo, err := client.NewFileCachedRepository(t.TempDir(), data.GUN(gun), e.inst.URL, dockerTransport(t, e, gun, user, pass, actions...),
		passphrase.ConstantRetriever("docker-trust-pass"), trustpinning.TrustPinConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// dockerTransport is the docker CLI's trust transport for gun: the challenge from a ping
// of /v2/, a token handler asking repository:<gun>:<actions> at the registry's token
// endpoint, and a basic fallback.
func dockerTransport(t *testing.T, e *env, gun, user, pass string, actions ...string) http.RoundTripper {
	t.Helper()
	base := e.inst.Client.Transport
	ping, err := (&http.Client{Transport: base, Timeout: 5 * time.Second}).Get(e.inst.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	ping.Body.Close()
	cm := challenge.NewSimpleManager()
	if err := cm.AddResponse(ping); err != nil {
		t.Fatal(err)
	}
	creds := dockerCreds{user, pass}
	th := auth.NewTokenHandlerWithOptions(auth.TokenHandlerOptions{Transport: base, Credentials: creds,
		Scopes: []auth.Scope{auth.RepositoryScope{Repository: gun, Actions: actions}}, ClientID: "docker"})
	return transport.NewTransport(base, auth.NewAuthorizer(cm, th, auth.NewBasicHandler(creds)))
}

// TestDockerContentTrustFlow signs, as docker push with DOCKER_CONTENT_TRUST=1 does, a tag
// pushed with go-containerregistry (server-managed snapshot, pull,push scopes), then a
// second identity holding only AcrPull resolves the tag to the signed digest as docker
// pull does and pulls the image by digest. An unsigned tag, and a repository without
// trust data, answer the errors docker reports as "does not have trust data".
func TestDockerContentTrustFlow(t *testing.T) {
	e := start(t, nil)
	const repoName = "team/app"
	admin := &authn.Basic{Username: "admin", Password: e.inst.AdminPassword}
	opts := []remote.Option{remote.WithAuth(admin), remote.WithTransport(e.inst.Client.Transport)}
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(e.gun(repoName) + ":v1")
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatal(err)
	}
	unsigned, _ := random.Image(256, 1)
	uref, _ := name.ParseReference(e.gun(repoName) + ":unsigned")
	if err := remote.Write(uref, unsigned, opts...); err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref, opts...)
	if err != nil {
		t.Fatal(err)
	}

	// docker push with content trust: a root key, Initialize with the snapshot managed by
	// the server, the tag as a target of the targets role, Publish.
	signer := dockerRepo(t, e, repoName, "admin", e.inst.AdminPassword, "pull", "push")
	rootKey, err := signer.GetCryptoService().Create(data.CanonicalRootRole, "", data.ECDSAKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := signer.Initialize([]string{rootKey.ID()}, data.CanonicalSnapshotRole); err != nil {
		t.Fatalf("initialize with a server-managed snapshot: %v", err)
	}
	h, _ := hex.DecodeString(desc.Digest.Hex)
	target := &client.Target{Name: "v1", Hashes: data.Hashes{notary.SHA256: h}, Length: desc.Size}
	if err := signer.AddTarget(target, data.CanonicalTargetsRole); err != nil {
		t.Fatal(err)
	}
	if err := signer.Publish(); err != nil {
		t.Fatalf("publish: %v", err)
	}

	// docker pull with content trust, as a reader that holds only AcrPull.
	e.user(t, "reader", "reader-Pass-1234", "AcrPull")
	reader := dockerRepo(t, e, repoName, "reader", "reader-Pass-1234", "pull")
	tw, err := reader.GetTargetByName("v1", "targets/releases", data.CanonicalTargetsRole)
	if err != nil {
		t.Fatalf("resolve v1 as the reader: %v", err)
	}
	if tw.Role != data.CanonicalTargetsRole || hex.EncodeToString(tw.Hashes[notary.SHA256]) != desc.Digest.Hex || tw.Length != desc.Size {
		t.Fatalf("resolved v1 to %s %x (%d bytes), pushed %s (%d bytes)", tw.Role, tw.Hashes[notary.SHA256], tw.Length, desc.Digest, desc.Size)
	}
	byDigest, _ := name.ParseReference(e.gun(repoName) + "@sha256:" + hex.EncodeToString(tw.Hashes[notary.SHA256]))
	pulled, err := remote.Image(byDigest, remote.WithAuth(&authn.Basic{Username: "reader", Password: "reader-Pass-1234"}), remote.WithTransport(e.inst.Client.Transport))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pulled.Digest(); err != nil || got != desc.Digest {
		t.Fatalf("pulled by digest %v (%v), want %s", got, err, desc.Digest)
	}
	layers, _ := pulled.Layers()
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}

	// The pushed but unsigned tag has no trust data (docker: "No trust data for unsigned").
	if _, err := reader.GetTargetByName("unsigned", "targets/releases", data.CanonicalTargetsRole); !errors.As(err, new(client.ErrNoSuchTarget)) {
		t.Fatalf("unsigned tag: %v, want ErrNoSuchTarget", err)
	}
	// A repository never signed: docker says "remote trust data does not exist … does not have trust data".
	other := dockerRepo(t, e, "team/other", "reader", "reader-Pass-1234", "pull")
	_, err = other.GetTargetByName("v1", "targets/releases", data.CanonicalTargetsRole)
	var notExist client.ErrRepositoryNotExist
	if !errors.As(err, &notExist) || !strings.Contains(err.Error(), "does not have trust data") {
		t.Fatalf("unsigned repository: %T %v, want ErrRepositoryNotExist", err, err)
	}
}
