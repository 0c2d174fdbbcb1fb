package signatures

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/cofferhq/coffer/internal/registry"
)

// Limits on what Coffer parses itself.
const (
	MaxPolicySize = 256 << 10
	MaxAnchorSize = 64 << 10
	maxRules      = 1000
	maxCerts      = 32
)

// ErrInvalid marks a policy document or anchor that does not parse or validate.
var ErrInvalid = errors.New("invalid")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// anchorName is the grammar of an anchor's name: a notation trust store name.
var anchorName = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,64}$`)

// ParsePolicy parses and validates a policy document (Policy as JSON):
// unknown fields, duplicate scopes, unknown modes and kinds are refused, and the notation
// trust policy is validated by notation-go itself.
func ParsePolicy(data []byte) (Policy, *trustpolicy.Document, error) {
	var p Policy
	if len(data) > MaxPolicySize {
		return p, nil, invalid("the policy document has %d bytes; at most %d are accepted", len(data), MaxPolicySize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, nil, invalid("the policy document is not valid JSON of the expected shape: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return p, nil, invalid("the policy document has content after its JSON object")
	}
	p.Version, p.Updated, p.RegistryHost = 0, nil, ""
	if len(p.Repositories) > maxRules {
		return p, nil, invalid("at most %d repository rules are accepted", maxRules)
	}
	seen := map[string]bool{}
	for i, r := range p.Repositories {
		at := fmt.Sprintf("repositories[%d]", i)
		if err := validScope(r.Scope); err != nil {
			return p, nil, invalid("%s.scope: %v", at, err)
		}
		if seen[r.Scope] {
			return p, nil, invalid("%s.scope %q is given twice", at, r.Scope)
		}
		seen[r.Scope] = true
		switch r.Mode {
		case ModeOff, ModeAudit, ModeEnforce:
		default:
			return p, nil, invalid("%s.mode %q: use off, audit or enforce", at, r.Mode)
		}
		for _, k := range r.Kinds {
			if !slices.Contains(allKinds, k) {
				return p, nil, invalid("%s.kinds: unknown kind %q (use %s)", at, k, strings.Join(allKinds, ", "))
			}
		}
		for _, k := range r.CosignKeys {
			if !anchorName.MatchString(k) {
				return p, nil, invalid("%s.cosignKeys: %q is not an anchor name", at, k)
			}
		}
		for _, e := range r.Exempt {
			if e == "" || len(e) > 128 {
				return p, nil, invalid("%s.exempt: give principal object ids", at)
			}
		}
		switch r.Publishers {
		case "", PublishersHead, PublishersRead, PublishersRefuse:
		default:
			return p, nil, invalid("%s.publishers %q: use %q (publishers may resolve an unverified image with HEAD, the default), %q (GET too) or %q (neither)", at, r.Publishers, PublishersHead, PublishersRead, PublishersRefuse)
		}
		if r.RefusePublishers && r.Publishers != "" && r.Publishers != PublishersRefuse {
			return p, nil, invalid("%s: refusePublishers contradicts publishers %q: give publishers only", at, r.Publishers)
		}
		switch r.Platforms {
		case "", PlatformsIndex, PlatformsEach:
		default:
			return p, nil, invalid("%s.platforms %q: use %q (a platform manifest passes when an index listing it verifies) or %q (each needs its own signature)", at, r.Platforms, PlatformsIndex, PlatformsEach)
		}
	}
	if len(p.Notation) == 0 || string(p.Notation) == "null" {
		p.Notation = nil
		return p, nil, nil
	}
	var doc trustpolicy.Document
	nd := json.NewDecoder(bytes.NewReader(p.Notation))
	nd.DisallowUnknownFields()
	if err := nd.Decode(&doc); err != nil {
		return p, nil, invalid("notation: not a notation trust policy document: %v", err)
	}
	if err := doc.Validate(); err != nil {
		return p, nil, invalid("notation: %v", err)
	}
	for _, tp := range doc.TrustPolicies {
		for _, ts := range tp.TrustStores {
			_, name, _ := strings.Cut(ts, ":")
			if !anchorName.MatchString(name) {
				return p, nil, invalid("notation: trust policy %q names trust store %q, whose name is not an anchor name", tp.Name, ts)
			}
		}
	}
	return p, &doc, nil
}

// Platform rules.
const (
	PlatformsIndex = "index"
	PlatformsEach  = "each"
)

var allKinds = []string{KindNotation, KindCosign, KindCosignOCI, KindCosignBundle}

// validScope checks a rule's scope: a repository name, NAME/* or *.
func validScope(s string) error {
	if s == "*" {
		return nil
	}
	name, prefix := strings.CutSuffix(s, "/*")
	if !registry.ValidName(name) {
		return fmt.Errorf("%q is not a repository name, NAME/* or *", s)
	}
	_ = prefix
	return nil
}

// Anchor is a validated anchor with its parsed material.
type Anchor struct {
	StoredAnchor
	Certs []*x509.Certificate // notation
	// Keys are a cosign anchor's public keys: one for a PEM upload; for a key held in a
	// vault (KeyURL), each enabled version the anchor trusts (none while the key is
	// disabled, deleted or out of reach).
	Keys   []CosignKey
	Prints []string
}

// CosignKey is one public key of a cosign anchor.
type CosignKey struct {
	Version  string // the vault key version ("" for a PEM upload)
	Key      crypto.PublicKey
	Verifier signature.Verifier
}

// pemKeyVersion is the PEM header naming a vault key version in a vault anchor's material.
const pemKeyVersion = "Key-Version"

// cosignKey loads a public key with sigstore's verifier for cosign (SHA-256).
func cosignKey(key crypto.PublicKey, version string) (CosignKey, []byte, error) {
	v, err := signature.LoadVerifier(key, crypto.SHA256)
	if err != nil {
		return CosignKey{}, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return CosignKey{}, nil, err
	}
	return CosignKey{Version: version, Key: key, Verifier: v}, der, nil
}

// ParseAnchor validates an anchor upload: its name, kind and material (certificates
// checked by notation-go's trust store rules, keys loaded by sigstore's signature package).
func ParseAnchor(in AnchorSpec) (Anchor, error) {
	a := Anchor{StoredAnchor: StoredAnchor{Name: in.Name, Kind: in.Kind, StoreType: in.StoreType}}
	a.KeyURL, a.KeyStatus, a.Refreshed = in.KeyURL, in.KeyStatus, in.Refreshed
	if !anchorName.MatchString(in.Name) {
		return a, invalid("anchor name %q: 1 to 64 letters, digits, '_', '.' and '-'", in.Name)
	}
	if len(in.Certificates)+len(in.PublicKey) > MaxAnchorSize {
		return a, invalid("the anchor's material has more than %d bytes", MaxAnchorSize)
	}
	switch in.Kind {
	case AnchorNotation:
		if in.PublicKey != "" {
			return a, invalid("a notation anchor holds certificates, not a public key")
		}
		if a.StoreType == "" {
			a.StoreType = string(truststore.TypeCA)
		}
		switch truststore.Type(a.StoreType) {
		case truststore.TypeCA, truststore.TypeSigningAuthority, truststore.TypeTSA:
		default:
			return a, invalid("storeType %q: use ca, signingAuthority or tsa", a.StoreType)
		}
		certs, err := parseCertificates([]byte(in.Certificates))
		if err != nil {
			return a, err
		}
		if err := truststore.ValidateCertificates(certs); err != nil {
			return a, invalid("certificates: %v", err)
		}
		a.Certs = certs
		var pemOut bytes.Buffer
		for _, c := range certs {
			pem.Encode(&pemOut, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
			a.Prints = append(a.Prints, fingerprint(c.Raw))
		}
		a.Material = pemOut.String()
	case AnchorCosign:
		if in.Certificates != "" || in.StoreType != "" {
			return a, invalid("a cosign anchor holds a public key (publicKey) or a vault key URL (keyUrl), not certificates")
		}
		if in.KeyURL != "" {
			return parseVaultAnchor(a, in)
		}
		if in.PublicKey == "" {
			return a, invalid("publicKey is required: the cosign public key in PEM (cosign.pub), or keyUrl: a key in one of Coffer's vaults")
		}
		key, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(in.PublicKey))
		if err != nil {
			return a, invalid("publicKey: %v", err)
		}
		k, der, err := cosignKey(key, "")
		if err != nil {
			return a, invalid("publicKey: %v", err)
		}
		a.Keys = []CosignKey{k}
		a.Prints = []string{fingerprint(der)}
		a.Material = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	default:
		return a, invalid("kind %q: use notation or cosign", in.Kind)
	}
	return a, nil
}

func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := bytes.TrimSpace(data)
	for len(rest) > 0 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, invalid("certificates: not PEM (give -----BEGIN CERTIFICATE----- blocks)")
		}
		if b.Type != "CERTIFICATE" {
			return nil, invalid("certificates: a %q PEM block is not a certificate", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, invalid("certificates: %v", err)
		}
		if certs = append(certs, c); len(certs) > maxCerts {
			return nil, invalid("certificates: at most %d are accepted in one anchor", maxCerts)
		}
		rest = bytes.TrimSpace(rest)
	}
	if len(certs) == 0 {
		return nil, invalid("certificates are required: the trust store's X.509 certificates in PEM")
	}
	return certs, nil
}

func fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// parseVaultAnchor reads the material of a cosign anchor whose key is in a vault: PEM
// PUBLIC KEY blocks, each with a Key-Version header (none: the key trusts nothing now).
func parseVaultAnchor(a Anchor, in AnchorSpec) (Anchor, error) {
	if _, err := ParseKeyURL(in.KeyURL); err != nil {
		return a, err
	}
	if len(in.PublicKey) > MaxAnchorSize {
		return a, invalid("the anchor's material has more than %d bytes", MaxAnchorSize)
	}
	rest := bytes.TrimSpace([]byte(in.PublicKey))
	var out bytes.Buffer
	for len(rest) > 0 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil || b.Type != "PUBLIC KEY" {
			return a, invalid("publicKey: the vault key's material is not PEM PUBLIC KEY blocks")
		}
		key, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return a, invalid("publicKey: %v", err)
		}
		k, der, err := cosignKey(key, b.Headers[pemKeyVersion])
		if err != nil {
			return a, invalid("publicKey: %v", err)
		}
		if len(a.Keys) >= maxKeyVersions {
			return a, invalid("publicKey: at most %d key versions are trusted", maxKeyVersions)
		}
		a.Keys = append(a.Keys, k)
		a.Prints = append(a.Prints, fingerprint(der))
		pem.Encode(&out, &pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{pemKeyVersion: k.Version}, Bytes: der})
		rest = bytes.TrimSpace(rest)
	}
	a.Material = out.String()
	return a, nil
}
