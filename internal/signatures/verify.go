package signatures

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/cofferhq/coffer/internal/registry"
)

// Artifact and media types of the signatures Coffer verifies.
const (
	ArtifactTypeNotation     = "application/vnd.cncf.notary.signature"
	ArtifactTypeCosign       = "application/vnd.dev.cosign.artifact.sig.v1+json"
	ArtifactTypeBundle       = "application/vnd.dev.sigstore.bundle.v0.3+json"
	artifactTypeBundleLegacy = "application/vnd.dev.sigstore.bundle+json;version=0.3"
	MediaTypeSimpleSigning   = "application/vnd.dev.cosign.simplesigning.v1+json"
	AnnotationCosignSig      = "dev.cosignproject.cosign/signature"
)

// Reasons a signature does not verify, as the refusal says them.
const (
	ReasonNoSignature = "no signature"
	ReasonUntrusted   = "signature by an untrusted key"
	ReasonExpiredCert = "expired certificate"
	ReasonMismatch    = "signature made for a different digest (digest mismatch)"
	ReasonInvalid     = "invalid signature"
	ReasonSigExpired  = "signature expired"
	ReasonRevoked     = "certificate revoked"
)

const (
	maxSignatures   = 20        // signatures looked at per manifest
	maxEnvelopeSize = 4 << 20   // a signature envelope, payload or bundle
	maxCacheTTL     = time.Hour // results are recomputed at least this often (revocation)
	maxParents      = 10
	verdictTTL      = 5 * time.Second
)

// Verdict is the judgement of one manifest under the current policy.
type Verdict struct {
	Mode, Scope string
	// Found are the kinds of signature found.
	Found    []string
	Verified bool
	// Kind and Anchor: the signature that verified; Via: the index it verified through.
	Kind, Anchor string
	Via          digest.Digest
	Reason       string
	Version      int64
}

type sigRef struct {
	kind string
	rec  registry.ManifestRecord
}

// sigResult is the verdict on one signature.
type sigResult struct {
	ok     bool
	anchor string
	reason string
	detail string
	until  time.Time
}

// Evaluate judges manifest m of repo under the current policy (whatever its mode).
func (s *Service) Evaluate(ctx context.Context, repo string, m registry.ManifestRecord) (Verdict, error) {
	c, err := s.current(ctx)
	if err != nil {
		return Verdict{}, err
	}
	return s.evaluate(ctx, c, repo, m, true)
}

func (s *Service) evaluate(ctx context.Context, c *compiled, repo string, m registry.ManifestRecord, viaParents bool) (Verdict, error) {
	vk := verdictKey{repo: repo, manifest: m.Digest, version: c.version}
	now := s.opts.Now()
	if v, ok := s.verdicts.get(vk, now); ok {
		return v, nil
	}
	v, until, err := s.judge(ctx, c, repo, m, viaParents)
	if err == nil && v.Verified {
		if u := now.Add(verdictTTL); until.IsZero() || u.Before(until) {
			until = u
		}
		s.verdicts.put(vk, v, until)
	}
	return v, err
}

// judge computes the verdict; until is when the verifying signature's result expires.
func (s *Service) judge(ctx context.Context, c *compiled, repo string, m registry.ManifestRecord, viaParents bool) (Verdict, time.Time, error) {
	v := Verdict{Mode: ModeOff, Version: c.version}
	r := c.rule(repo)
	if r != nil {
		v.Mode, v.Scope = r.Mode, r.Scope
	} else {
		r = &Rule{Mode: ModeOff}
	}
	sigs, err := s.signaturesOf(ctx, repo, m.Digest)
	if err != nil {
		return v, time.Time{}, err
	}
	var reasons []string
	for _, sg := range sigs {
		if !slices.Contains(v.Found, sg.kind) {
			v.Found = append(v.Found, sg.kind)
		}
	}
	for _, sg := range sigs {
		if len(r.Kinds) > 0 && !slices.Contains(r.Kinds, sg.kind) {
			continue
		}
		res := s.verifyCached(ctx, c, r, repo, m, sg)
		if res.ok {
			v.Verified, v.Kind, v.Anchor, v.Reason = true, sg.kind, res.anchor, ""
			return v, res.until, nil
		}
		why := res.reason
		if res.detail != "" {
			why += " (" + sg.kind + ": " + res.detail + ")"
		}
		if !slices.Contains(reasons, why) {
			reasons = append(reasons, why)
		}
	}
	if viaParents && r.Platforms != PlatformsEach && !isIndex(m.MediaType) {
		parents, err := s.opts.Registry.ParentIndexes(ctx, repo, m.Digest)
		if err != nil {
			return v, time.Time{}, err
		}
		for i, pd := range parents {
			if i >= maxParents {
				break
			}
			prec, err := s.opts.Registry.StatManifest(ctx, repo, pd.String())
			if err != nil {
				continue // deleted meanwhile
			}
			pv, until, err := s.judge(ctx, c, repo, prec, false)
			if err != nil {
				return v, time.Time{}, err
			}
			if pv.Verified {
				v.Verified, v.Kind, v.Anchor, v.Via, v.Reason = true, pv.Kind, pv.Anchor, pd, ""
				return v, until, nil
			}
		}
	}
	switch {
	case len(reasons) > 0:
		v.Reason = strings.Join(reasons, "; ")
	case len(v.Found) > 0:
		v.Reason = ReasonNoSignature + " of a kind the policy accepts (" + strings.Join(r.Kinds, ", ") + ")"
	default:
		v.Reason = ReasonNoSignature
	}
	return v, time.Time{}, nil
}

func isIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == "application/vnd.docker.distribution.manifest.list.v2+json"
}

// signaturesOf lists the signatures stored for manifest d of repo: referrers of the
// signature artifact types (newest first) and cosign's sha256-<hex>.sig tag.
func (s *Service) signaturesOf(ctx context.Context, repo string, d digest.Digest) ([]sigRef, error) {
	recs, err := s.opts.Registry.ReferrerRecords(ctx, repo, d)
	if err != nil {
		return nil, err
	}
	var out []sigRef
	for i := len(recs) - 1; i >= 0 && len(out) < maxSignatures; i-- {
		var kind string
		switch recs[i].ArtifactType {
		case ArtifactTypeNotation:
			kind = KindNotation
		case ArtifactTypeCosign:
			kind = KindCosignOCI
		case ArtifactTypeBundle, artifactTypeBundleLegacy:
			kind = KindCosignBundle
		default:
			continue
		}
		out = append(out, sigRef{kind: kind, rec: recs[i]})
	}
	if d.Algorithm() == digest.SHA256 && len(out) < maxSignatures {
		rec, err := s.opts.Registry.StatManifest(ctx, repo, CosignTag(d))
		switch {
		case err == nil:
			out = append(out, sigRef{kind: KindCosign, rec: rec})
		case registry.ErrorCode(err) != registry.CodeManifestUnknown:
			return nil, err
		}
	}
	return out, nil
}

// CosignTag is the tag cosign stores the signatures of d under.
func CosignTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded() + ".sig"
}

func (s *Service) verifyCached(ctx context.Context, c *compiled, r *Rule, repo string, m registry.ManifestRecord, sg sigRef) sigResult {
	// The rule is part of the policy version; the scope keys it for repositories whose
	// rules differ.
	k := cacheKey{repo: repo, manifest: m.Digest, signature: sg.rec.Digest, version: c.version}
	now := s.opts.Now()
	if res, ok := s.cache.get(k, now); ok {
		return res
	}
	start := time.Now()
	var res sigResult
	switch sg.kind {
	case KindNotation:
		res = s.verifyNotation(ctx, c, repo, m, sg.rec)
	case KindCosign, KindCosignOCI:
		res = s.verifySimpleSigning(ctx, c, r, repo, m, sg.rec)
	case KindCosignBundle:
		res = s.verifyBundle(ctx, c, r, repo, m, sg.rec)
	}
	s.opts.Metrics.verified(sg.kind, res.ok, time.Since(start))
	if ctx.Err() != nil {
		return res // not cached: the answer may be a cancelled read
	}
	until := now.Add(maxCacheTTL)
	if !res.until.IsZero() && res.until.Before(until) {
		until = res.until
	}
	s.cache.put(k, res, until)
	return res
}

// readManifest reads a signature manifest.
func (s *Service) readManifest(ctx context.Context, repo string, d digest.Digest) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	_, body, err := s.opts.Registry.GetManifest(ctx, repo, d.String())
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return m, fmt.Errorf("signature manifest %s: %w", d, err)
	}
	return m, nil
}

func (s *Service) readBlob(ctx context.Context, repo string, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > maxEnvelopeSize {
		return nil, fmt.Errorf("blob %s has %d bytes, more than a signature may", desc.Digest, desc.Size)
	}
	rc, _, err := s.opts.Registry.OpenBlob(ctx, repo, desc.Digest, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxEnvelopeSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxEnvelopeSize {
		return nil, fmt.Errorf("blob %s is larger than a signature may be", desc.Digest)
	}
	return b, nil
}

func unreadable(err error) sigResult {
	return sigResult{reason: ReasonInvalid, detail: "unreadable: " + err.Error(), until: time.Now().Add(time.Minute)}
}

// verifyNotation verifies one notation signature with notation-go's verifier under the
// notation trust policy.
func (s *Service) verifyNotation(ctx context.Context, c *compiled, repo string, m registry.ManifestRecord, sig registry.ManifestRecord) sigResult {
	if c.notation == nil {
		return sigResult{reason: ReasonUntrusted, detail: "no notation trust policy is set"}
	}
	sm, err := s.readManifest(ctx, repo, sig.Digest)
	if err != nil {
		return unreadable(err)
	}
	if len(sm.Layers) != 1 {
		return sigResult{reason: ReasonInvalid, detail: fmt.Sprintf("a notation signature manifest has one layer, this one %d", len(sm.Layers))}
	}
	env, err := s.readBlob(ctx, repo, sm.Layers[0])
	if err != nil {
		return unreadable(err)
	}
	target := ocispec.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: m.Size}
	ref := s.opts.RegistryHost + "/" + repo + "@" + m.Digest.String()
	out, err := c.notation.Verify(ctx, target, env, notation.VerifierVerifyOptions{ArtifactReference: ref, SignatureMediaType: sm.Layers[0].MediaType})
	var chain []*x509.Certificate
	if out != nil && out.EnvelopeContent != nil {
		chain = out.EnvelopeContent.SignerInfo.CertificateChain
	}
	if err == nil {
		res := sigResult{ok: true, anchor: c.notationAnchor(chain)}
		for _, cert := range chain {
			if res.until.IsZero() || cert.NotAfter.Before(res.until) {
				res.until = cert.NotAfter
			}
		}
		if exp := out.EnvelopeContent.SignerInfo.SignedAttributes.Expiry; !exp.IsZero() && (res.until.IsZero() || exp.Before(res.until)) {
			res.until = exp
		}
		return res
	}
	var noPolicy notation.ErrorNoApplicableTrustPolicy
	if errors.As(err, &noPolicy) {
		return sigResult{reason: ReasonUntrusted, detail: "no notation trust policy applies to " + s.opts.RegistryHost + "/" + repo}
	}
	if err.Error() == "content descriptor mismatch" {
		return sigResult{reason: ReasonMismatch}
	}
	expired := false
	now := s.opts.Now()
	for _, cert := range chain {
		if now.After(cert.NotAfter) {
			expired = true
		}
	}
	res := sigResult{reason: ReasonInvalid, detail: err.Error()}
	if out != nil {
	results:
		for _, vr := range out.VerificationResults {
			if vr.Error == nil || vr.Action != trustpolicy.ActionEnforce {
				continue
			}
			switch vr.Type {
			case trustpolicy.TypeAuthenticity, trustpolicy.TypeAuthenticTimestamp:
				res = sigResult{reason: ReasonUntrusted, detail: vr.Error.Error()}
				if expired {
					res = sigResult{reason: ReasonExpiredCert, detail: vr.Error.Error()}
				}
			case trustpolicy.TypeExpiry:
				res = sigResult{reason: ReasonSigExpired, detail: vr.Error.Error()}
			case trustpolicy.TypeRevocation:
				res = sigResult{reason: ReasonRevoked, detail: vr.Error.Error()}
			case trustpolicy.TypeIntegrity:
				res = sigResult{reason: ReasonInvalid, detail: vr.Error.Error()}
			}
			break results
		}
	}
	if res.reason != ReasonExpiredCert && expired {
		res = sigResult{reason: ReasonExpiredCert, detail: err.Error()}
	}
	return res
}

// notationAnchor names the anchor whose certificate is in a verified chain.
func (c *compiled) notationAnchor(chain []*x509.Certificate) string {
	for i := len(chain) - 1; i >= 0; i-- {
		for _, a := range c.anchors {
			if a.Kind != AnchorNotation || a.StoreType == string(truststore.TypeTSA) {
				continue
			}
			for _, ac := range a.Certs {
				if ac.Equal(chain[i]) {
					return a.Name
				}
			}
		}
	}
	return ""
}

// cosignKeys are the cosign anchors a rule accepts.
func (c *compiled) cosignKeys(r *Rule) []*Anchor {
	var out []*Anchor
	for i := range c.anchors {
		a := &c.anchors[i]
		if a.Kind == AnchorCosign && (len(r.CosignKeys) == 0 || slices.Contains(r.CosignKeys, a.Name)) {
			out = append(out, a)
		}
	}
	return out
}

// cosignSignature reads a cosign signature manifest and the keys the rule accepts; with
// no keys (nil) res says why, else res is the failure to report if no key verifies.
func (s *Service) cosignSignature(ctx context.Context, c *compiled, r *Rule, repo string, sig registry.ManifestRecord) ([]*Anchor, ocispec.Manifest, sigResult) {
	keys := c.cosignKeys(r)
	if len(keys) == 0 {
		return nil, ocispec.Manifest{}, sigResult{reason: ReasonUntrusted, detail: "no cosign key anchor is accepted here"}
	}
	sm, err := s.readManifest(ctx, repo, sig.Digest)
	if err != nil {
		return nil, sm, unreadable(err)
	}
	return keys, sm, sigResult{reason: ReasonUntrusted}
}

// verifySimpleSigning verifies cosign's simple-signing signatures (the .sig tag, or an
// OCI 1.1 referrer): each layer is a payload with its signature in an annotation; the
// signature is checked with sigstore's verifier for each accepted key, then the payload
// must name the manifest's digest.
func (s *Service) verifySimpleSigning(ctx context.Context, c *compiled, r *Rule, repo string, m registry.ManifestRecord, sig registry.ManifestRecord) sigResult {
	keys, sm, res := s.cosignSignature(ctx, c, r, repo, sig)
	if keys == nil {
		return res
	}
	for i, l := range sm.Layers {
		if i >= maxSignatures {
			break
		}
		if l.MediaType != MediaTypeSimpleSigning {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(l.Annotations[AnnotationCosignSig])
		if err != nil || len(raw) == 0 {
			res = sigResult{reason: ReasonInvalid, detail: "a layer has no base64 signature annotation"}
			continue
		}
		body, err := s.readBlob(ctx, repo, l)
		if err != nil {
			return unreadable(err)
		}
		for _, k := range keys {
			if !k.verifies(raw, body) {
				continue
			}
			var p payload.SimpleContainerImage
			if err := json.Unmarshal(body, &p); err != nil || p.Critical.Type != payload.CosignSignatureType {
				res = sigResult{reason: ReasonInvalid, detail: "the signed payload is not a cosign container image signature"}
				continue
			}
			if p.Critical.Image.DockerManifestDigest != m.Digest.String() {
				res = sigResult{reason: ReasonMismatch, detail: "signed for " + p.Critical.Image.DockerManifestDigest}
				continue
			}
			return sigResult{ok: true, anchor: k.Name}
		}
	}
	return res
}

// verifyBundle verifies a Sigstore bundle v0.3 (as cosign v3 stores it as a referrer)
// with sigstore-go, key-based and offline: the artifact is the manifest's digest.
func (s *Service) verifyBundle(ctx context.Context, c *compiled, r *Rule, repo string, m registry.ManifestRecord, sig registry.ManifestRecord) sigResult {
	keys, sm, res := s.cosignSignature(ctx, c, r, repo, sig)
	if keys == nil {
		return res
	}
	if len(sm.Layers) != 1 {
		return sigResult{reason: ReasonInvalid, detail: fmt.Sprintf("a bundle manifest has one layer, this one %d", len(sm.Layers))}
	}
	body, err := s.readBlob(ctx, repo, sm.Layers[0])
	if err != nil {
		return unreadable(err)
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(body); err != nil {
		return sigResult{reason: ReasonInvalid, detail: "not a Sigstore bundle: " + err.Error()}
	}
	raw, err := hex.DecodeString(m.Digest.Encoded())
	if err != nil || m.Digest.Algorithm() != digest.SHA256 {
		return sigResult{reason: ReasonInvalid, detail: "only sha256 manifests are verified with bundles"}
	}
	for _, a := range keys {
		for _, k := range a.Keys {
			key := root.NewExpiringKey(k.Verifier, time.Time{}, time.Time{})
			tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
			v, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
			if err != nil {
				return sigResult{reason: ReasonInvalid, detail: err.Error()}
			}
			_, err = v.Verify(&b, verify.NewPolicy(verify.WithArtifactDigest("sha256", raw), verify.WithKey()))
			if err == nil {
				return sigResult{ok: true, anchor: a.Name}
			}
			// Signed by this key, but for another artifact?
			if _, err2 := v.Verify(&b, verify.NewPolicy(verify.WithoutArtifactUnsafe(), verify.WithKey())); err2 == nil {
				res = sigResult{reason: ReasonMismatch}
			}
		}
	}
	return res
}

// verifies reports whether one of a's keys verifies sig over body.
func (a *Anchor) verifies(sig, body []byte) bool {
	for _, k := range a.Keys {
		if k.Verifier.VerifySignature(bytes.NewReader(sig), bytes.NewReader(body)) == nil {
			return true
		}
	}
	return false
}

// trustStore is the notation trust store over the anchors of one policy version. A store
// that is not an anchor (removed since) holds no certificate, so the others still apply.
type trustStore struct{ c *compiled }

func (t trustStore) GetCertificates(_ context.Context, typ truststore.Type, name string) ([]*x509.Certificate, error) {
	a := t.c.anchor(name)
	if a == nil || a.Kind != AnchorNotation || a.StoreType != string(typ) {
		return nil, nil
	}
	return slices.Clone(a.Certs), nil
}
