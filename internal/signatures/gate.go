package signatures

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/registry"
)

// Audit operations.
const (
	OpPullUnverified = "signature.pull.unverified" // audit mode: pulled anyway
	OpPullRefused    = "signature.pull.refused"    // enforce: refused
	OpPullExempt     = "signature.pull.exempt"     // enforce: an exempt identity pulled it
	OpAnchorAdd      = "signature.anchor.add"
	OpAnchorDelete   = "signature.anchor.delete"
	OpAnchorRefresh  = "signature.anchor.refresh"
	OpPolicySet      = "signature.policy.set"
)

// CheckPull is the registry's pull gate: "" lets the pull of manifest m (asked for as
// reference, with method GET or HEAD) go on, anything else is the refusal's message. Under
// audit an unverified pull is let through, counted and audited; under enforce it is
// refused unless the caller is exempt (audited too): listed in the rule's exempt, or a
// publisher of the repository asking with HEAD (what a signer does before signing; see
// Rule.Publishers). Signature artifacts themselves are never gated.
func (s *Service) CheckPull(ctx context.Context, caller identity.Principal, method, repo, reference string, m registry.ManifestRecord) (string, error) {
	c, err := s.current(ctx)
	if err != nil {
		return "", err
	}
	r := c.rule(repo)
	if r == nil || r.Mode == ModeOff {
		return "", nil
	}
	if ok, err := s.signatureArtifact(ctx, repo, reference, m); err != nil || ok {
		return "", err
	}
	v, err := s.evaluate(ctx, c, repo, m, true)
	if err != nil {
		return "", err
	}
	if v.Verified {
		s.opts.Metrics.pull(r.Mode, "verified")
		return "", nil
	}
	msg := fmt.Sprintf("signature policy %q (mode %s) refuses %s@%s: %s", r.Scope, r.Mode, repo, m.Digest, v.Reason)
	rec := audit.Record{Time: s.opts.Now(), Component: "registry", PrincipalID: caller.ID, PrincipalName: caller.Name,
		PrincipalKind: string(caller.Kind), Target: repo + "@" + m.Digest.String(), Resource: "registry/repositories/" + repo, Detail: msg}
	if r.Mode == ModeAudit {
		s.opts.Metrics.pull(r.Mode, "unverified")
		rec.Operation, rec.Result = OpPullUnverified, audit.ResultSuccess
		s.record(rec)
		return "", nil
	}
	why := ""
	switch {
	case caller.ID != "" && slices.Contains(r.Exempt, caller.ID):
		why = "listed in the rule's exempt"
	case r.publishers() == PublishersRead && s.publisher(ctx, caller, repo):
		// The rule lets publishers read unverified images (cosign sign GETs the manifest).
		why = "a publisher: registry/push on the repository, and the rule's publishers is read"
	case r.publishers() == PublishersHead && method == http.MethodHead && s.publisher(ctx, caller, repo):
		// Publishers (registry/push on the repository: AcrPush, Contributor, Owner) may
		// resolve what they publish, as notation sign does before signing (a HEAD: the
		// digest and size, no content). Their GET is judged like anyone's.
		why = "a publisher resolving the image (HEAD): registry/push on the repository"
	}
	if why != "" {
		s.opts.Metrics.pull(r.Mode, "exempt")
		rec.Operation, rec.Result = OpPullExempt, audit.ResultSuccess
		rec.Detail = "exempt from the signature policy (" + why + "): " + msg
		s.record(rec)
		s.log.WarnContext(ctx, "unverified image pulled by an exempt identity", "repository", repo, "digest", m.Digest, "principal", caller.ID, "why", why)
		return "", nil
	}
	s.opts.Metrics.pull(r.Mode, "refused")
	rec.Operation, rec.Result = OpPullRefused, audit.ResultDenied
	s.record(rec)
	return msg, nil
}

// publisher reports whether caller may push to repo.
func (s *Service) publisher(ctx context.Context, caller identity.Principal, repo string) bool {
	if s.opts.Authorizer == nil || caller.ID == "" {
		return false
	}
	return s.opts.Authorizer.Authorize(ctx, access.Request{Principal: caller, Action: access.RegistryPush, Scope: access.RepositoryScope(repo)}) == nil
}

func (s *Service) record(r audit.Record) {
	if s.opts.Audit != nil {
		s.opts.Audit.Record(r)
	}
}

// sigTag matches the tags clients keep signatures and referrer indexes under
// (sha256-<hex>, sha256-<hex>.sig, .att, .sbom).
var sigTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}(\.[a-z]+)?$`)

// signatureArtifact reports whether m is a signature or another artifact about an image
// (a referrer, or what a sha256-<hex> tag holds) that carries no runnable layer, and so
// stays readable for clients to verify on their side. A manifest with a subject or such a
// tag but image layers is judged as an image: a subject is no way around the policy.
func (s *Service) signatureArtifact(ctx context.Context, repo, reference string, m registry.ManifestRecord) (bool, error) {
	if m.Subject == "" && !sigTag.MatchString(reference) {
		return false, nil
	}
	if isIndex(m.MediaType) {
		return true, nil // each manifest it lists is gated on its own
	}
	_, body, err := s.opts.Registry.GetManifest(ctx, repo, m.Digest.String())
	if err != nil {
		return false, err
	}
	var mf ocispec.Manifest
	if err := json.Unmarshal(body, &mf); err != nil {
		return false, nil
	}
	for _, l := range mf.Layers {
		if strings.HasPrefix(l.MediaType, "application/vnd.oci.image.layer.") || strings.HasPrefix(l.MediaType, "application/vnd.docker.image.rootfs.") {
			return false, nil
		}
	}
	return true, nil
}

// SignatureArtifact reports whether manifest m of repo, as reference, is a signature or
// another artifact about an image that the pull gate never judges (a tag listing says so
// instead of a verdict).
func (s *Service) SignatureArtifact(ctx context.Context, repo, reference string, m registry.ManifestRecord) (bool, error) {
	return s.signatureArtifact(ctx, repo, reference, m)
}

// Versioned reports the policy version (for tests and the management API).
func (s *Service) Version(ctx context.Context) (int64, error) {
	c, err := s.current(ctx)
	if err != nil {
		return 0, err
	}
	return c.version, nil
}
