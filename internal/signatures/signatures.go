// Package signatures is Coffer's signature policy: trust anchors (notation trust stores,
// cosign public keys), a policy per repository or prefix (off, audit, enforce), and the
// verification of notation and cosign signatures stored in the registry, with the
// projects' own verifiers: notation-go's verifier under a notation trust policy, and
// sigstore's (sigstore-go for Sigstore bundles, sigstore's signature package for the
// simple-signing signatures of cosign's .sig tags and OCI 1.1 referrers). Coffer parses
// only its own policy document and anchor uploads.
//
// The registry asks CheckPull before answering a manifest GET or HEAD. Results are cached
// per (repository, manifest digest, signature digest, policy version); every change to
// the policy or an anchor bumps the version, so nothing stale is reused, and a signature
// pushed later has a digest of its own, so it is seen on the next pull. docs/signatures.md
// describes the policy and what is refused with which message.
package signatures

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/registry"
)

// Registry is what verification reads from the registry service, in-process.
type Registry interface {
	StatManifest(ctx context.Context, repo, reference string) (registry.ManifestRecord, error)
	GetManifest(ctx context.Context, repo, reference string) (registry.ManifestRecord, []byte, error)
	ReferrerRecords(ctx context.Context, repo string, d digest.Digest) ([]registry.ManifestRecord, error)
	ParentIndexes(ctx context.Context, repo string, d digest.Digest) ([]digest.Digest, error)
	OpenBlob(ctx context.Context, repo string, d digest.Digest, offset int64) (io.ReadCloser, registry.BlobInfo, error)
}

// Auditor records audit events (*audit.Log).
type Auditor interface {
	Record(r audit.Record)
}

// Options configure a Service.
type Options struct {
	Store    Store
	Registry Registry
	Audit    Auditor
	// Authorizer decides who is a publisher of a repository (registry/push there):
	// publishers may read unverified images they are about to sign (audited).
	Authorizer access.Authorizer
	Metrics    *Metrics
	Log        *slog.Logger
	// RegistryHost is put in front of a repository name to match notation registryScopes
	// (HOST/REPO).
	RegistryHost string
	// ReloadInterval is how often a replica checks the stored version for changes made
	// elsewhere (default 2s). Changes made through this Service apply at once.
	ReloadInterval time.Duration
	// Vault and VaultIdentity read the cosign anchors held in a vault (keyUrl): this
	// process's vaults, as the registry's system identity (nil: no such anchors).
	Vault         KeyVault
	VaultIdentity identity.Principal
	// KeyRefreshInterval is how often Run re-reads those keys (default 1 minute).
	KeyRefreshInterval time.Duration
	// CacheSize bounds the verification cache (entries; default 100000).
	CacheSize int
	// Now is the clock.
	Now func() time.Time
}

// Service holds the policy and verifies signatures.
type Service struct {
	opts  Options
	log   *slog.Logger
	cache *cache[cacheKey, sigResult]
	// verdicts holds positive verdicts per manifest for verdictTTL, so that a warm pull
	// reads no signature list; refusals are never held (a signature pushed later counts
	// at once), and a deleted signature stops counting within verdictTTL.
	verdicts *cache[verdictKey, Verdict]
	cur      atomic.Pointer[compiled]
	// loadMu serialises reloads.
	loadMu sync.Mutex
}

// New returns the service and loads the stored policy.
func New(ctx context.Context, o Options) (*Service, error) {
	if o.Store == nil || o.Registry == nil {
		return nil, errors.New("signatures: a store and a registry are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ReloadInterval <= 0 {
		o.ReloadInterval = 2 * time.Second
	}
	if o.KeyRefreshInterval <= 0 {
		o.KeyRefreshInterval = time.Minute
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 100000
	}
	if o.RegistryHost == "" {
		o.RegistryHost = "localhost"
	}
	s := &Service{opts: o, log: o.Log, cache: newCache[cacheKey, sigResult](o.CacheSize), verdicts: newCache[verdictKey, Verdict](o.CacheSize)}
	if _, err := s.reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// compiled is the policy at one version, ready to evaluate.
type compiled struct {
	version  int64
	checked  time.Time
	policy   Policy
	anchors  []Anchor
	notation notation.Verifier // nil: no notation trust policy
	notDoc   *trustpolicy.Document
}

// current returns the policy, reloading it when another replica may have changed it.
func (s *Service) current(ctx context.Context) (*compiled, error) {
	c := s.cur.Load()
	if s.opts.Now().Sub(c.checked) < s.opts.ReloadInterval {
		return c, nil
	}
	v, err := s.opts.Store.Version(ctx)
	if err != nil {
		return nil, err
	}
	if v == c.version {
		nc := *c
		nc.checked = s.opts.Now()
		s.cur.CompareAndSwap(c, &nc)
		return &nc, nil
	}
	return s.reload(ctx)
}

// reload reads and compiles the stored policy.
func (s *Service) reload(ctx context.Context) (*compiled, error) {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	st, err := s.opts.Store.Load(ctx)
	if err != nil {
		return nil, err
	}
	c := &compiled{version: st.Version, checked: s.opts.Now()}
	for _, sa := range st.Anchors {
		in := AnchorSpec{Name: sa.Name, Kind: sa.Kind, StoreType: sa.StoreType, KeyURL: sa.KeyURL, KeyStatus: sa.KeyStatus, Refreshed: sa.Refreshed}
		if sa.Kind == AnchorCosign {
			in.PublicKey = sa.Material
		} else {
			in.Certificates = sa.Material
		}
		a, err := ParseAnchor(in)
		if err != nil {
			// Stored anchors were validated; one that no longer parses is left out (and
			// so trusts nothing) rather than stopping the registry.
			s.log.Error("stored signature anchor does not parse: it is ignored", "anchor", sa.Name, "err", err)
			continue
		}
		a.Created = sa.Created
		c.anchors = append(c.anchors, a)
	}
	if len(st.Policy) > 0 {
		p, doc, err := ParsePolicy(st.Policy)
		if err != nil {
			return nil, fmt.Errorf("the stored signature policy does not parse: %w", err)
		}
		c.policy, c.notDoc = p, doc
	}
	c.policy.Version = st.Version
	c.policy.RegistryHost = s.opts.RegistryHost
	if !st.Updated.IsZero() {
		u := st.Updated
		c.policy.Updated = &u
	}
	if c.notDoc != nil {
		v, err := verifier.NewWithOptions(c.notDoc, trustStore{c}, nil, verifier.VerifierOptions{})
		if err != nil {
			return nil, fmt.Errorf("notation verifier: %w", err)
		}
		c.notation = v
	}
	s.cur.Store(c)
	return c, nil
}

// Policy returns the current policy document.
func (s *Service) Policy(ctx context.Context) (Policy, error) {
	c, err := s.current(ctx)
	if err != nil {
		return Policy{}, err
	}
	return c.policy, nil
}

// SetPolicy validates and stores a policy document (JSON). Every trust store the notation
// trust policy names and every cosign key a rule names must be an anchor.
func (s *Service) SetPolicy(ctx context.Context, doc []byte) (Policy, error) {
	p, nd, err := ParsePolicy(doc)
	if err != nil {
		return p, err
	}
	c, err := s.current(ctx)
	if err != nil {
		return p, err
	}
	for i, r := range p.Repositories {
		for _, k := range r.CosignKeys {
			if a := c.anchor(k); a == nil || a.Kind != AnchorCosign {
				return p, invalid("repositories[%d].cosignKeys: %q is not a cosign anchor: add it first (coffer registry signature anchor add)", i, k)
			}
		}
	}
	if nd != nil {
		for _, tp := range nd.TrustPolicies {
			for _, ts := range tp.TrustStores {
				typ, name, _ := strings.Cut(ts, ":")
				if a := c.anchor(name); a == nil || a.Kind != AnchorNotation || a.StoreType != typ {
					return p, invalid("notation: trust policy %q names trust store %q, which is not a notation anchor of that store type: add it first", tp.Name, ts)
				}
			}
		}
	}
	canon, err := json.Marshal(p)
	if err != nil {
		return p, err
	}
	if _, err := s.opts.Store.SetPolicy(ctx, canon, s.opts.Now()); err != nil {
		return p, err
	}
	c, err = s.reload(ctx)
	if err != nil {
		return p, err
	}
	return c.policy, nil
}

// Anchors lists the anchors.
func (s *Service) Anchors(ctx context.Context) ([]AnchorSpec, error) {
	c, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]AnchorSpec, 0, len(c.anchors))
	for _, a := range c.anchors {
		out = append(out, anchorOut(a))
	}
	return out, nil
}

func anchorOut(a Anchor) AnchorSpec {
	w := AnchorSpec{Name: a.Name, Kind: a.Kind, StoreType: a.StoreType, Fingerprints: a.Prints, Created: a.Created,
		KeyURL: a.KeyURL, KeyStatus: a.KeyStatus, Refreshed: a.Refreshed}
	if a.Kind == AnchorCosign {
		w.PublicKey = a.Material
	} else {
		w.Certificates = a.Material
	}
	return w
}

// AddAnchor validates and stores an anchor.
func (s *Service) AddAnchor(ctx context.Context, in AnchorSpec) (AnchorSpec, error) {
	in.KeyStatus, in.Refreshed = "", nil
	if in.KeyURL != "" {
		if in.Kind != AnchorCosign || in.PublicKey != "" || in.Certificates != "" || in.StoreType != "" {
			return AnchorSpec{}, invalid("keyUrl names a cosign key in a vault: give --kind cosign and no PEM file")
		}
		material, err := s.fetchVaultKey(ctx, in.KeyURL)
		var ku *keyUnavailable
		if errors.As(err, &ku) {
			return AnchorSpec{}, invalid("%s", ku.msg) // a new anchor must be readable now
		}
		if err != nil {
			return AnchorSpec{}, err
		}
		now := s.opts.Now().UTC()
		in.PublicKey, in.Refreshed = material, &now
	}
	a, err := ParseAnchor(in)
	if err != nil {
		return AnchorSpec{}, err
	}
	a.Created = s.opts.Now().UTC()
	if _, err := s.opts.Store.PutAnchor(ctx, a.StoredAnchor); err != nil {
		return AnchorSpec{}, err
	}
	if _, err := s.reload(ctx); err != nil {
		return AnchorSpec{}, err
	}
	return anchorOut(a), nil
}

// DeleteAnchor removes an anchor: images signed only under it stop verifying at once.
func (s *Service) DeleteAnchor(ctx context.Context, name string) error {
	if _, err := s.opts.Store.DeleteAnchor(ctx, name); err != nil {
		return err
	}
	_, err := s.reload(ctx)
	return err
}

func (c *compiled) anchor(name string) *Anchor {
	for i := range c.anchors {
		if c.anchors[i].Name == name {
			return &c.anchors[i]
		}
	}
	return nil
}

// rule returns the rule that applies to repo: the exact scope, else the longest NAME/*
// prefix, else "*"; nil if none (off).
func (c *compiled) rule(repo string) *Rule {
	var best *Rule
	bestLen := -1
	for i := range c.policy.Repositories {
		r := &c.policy.Repositories[i]
		switch {
		case r.Scope == repo:
			return r
		case r.Scope == "*":
			if bestLen < 0 {
				best, bestLen = r, 0
			}
		case strings.HasSuffix(r.Scope, "/*") && strings.HasPrefix(repo, strings.TrimSuffix(r.Scope, "*")):
			if n := len(r.Scope); n > bestLen {
				best, bestLen = r, n
			}
		}
	}
	return best
}
