package wire

import (
	"encoding/json"
	"time"
)

// Signature anchor kinds.
const (
	AnchorNotation = "notation"
	AnchorCosign   = "cosign"
)

// Signature policy modes.
const (
	SignatureModeOff     = "off"
	SignatureModeAudit   = "audit"
	SignatureModeEnforce = "enforce"
)

// Signature kinds a rule may accept, and that a tag listing reports.
const (
	SignatureNotation     = "notation"
	SignatureCosign       = "cosign"        // legacy sha256-<hex>.sig tag
	SignatureCosignOCI    = "cosign-oci"    // OCI 1.1 referrer, simple signing payload
	SignatureCosignBundle = "cosign-bundle" // Sigstore bundle v0.3 referrer
)

// SignatureAnchor is a trust anchor held by the registry: a notation trust store (X.509
// certificates) or a cosign public key.
type SignatureAnchor struct {
	Name string `json:"name"`
	// Kind is "notation" or "cosign".
	Kind string `json:"kind"`
	// StoreType is the notation trust store type: "ca" (default), "signingAuthority" or
	// "tsa". A trust policy names the store as STORETYPE:NAME.
	StoreType string `json:"storeType,omitempty"`
	// Certificates are the notation trust store's certificates, PEM.
	Certificates string `json:"certificates,omitempty"`
	// PublicKey is the cosign public key, PEM (PKIX). For a key held in a vault (KeyURL)
	// it is read-only: the public keys of the versions the anchor trusts now, each PEM
	// block with a Key-Version header.
	PublicKey string `json:"publicKey,omitempty"`
	// KeyURL names a cosign key held in one of this server's vaults:
	// https://VAULT-HOST/keys/NAME (every enabled version, following rotation) or
	// https://VAULT-HOST/keys/NAME/VERSION (that version only). The registry reads the
	// public key as its system identity, which needs the get and list key permissions.
	KeyURL string `json:"keyUrl,omitempty"`
	// KeyStatus says why a vault key trusts nothing now (disabled, deleted, no access);
	// empty when it is read (read-only).
	KeyStatus string `json:"keyStatus,omitempty"`
	// Refreshed is when the vault key was last read (read-only).
	Refreshed *time.Time `json:"refreshed,omitempty"`
	// Fingerprints are the SHA-256 of each certificate (DER) or of the key (PKIX DER), hex.
	Fingerprints []string  `json:"fingerprints,omitempty"`
	Created      time.Time `json:"created"`
}

// SignaturePolicy is the registry's signature policy: one rule per repository or prefix,
// and the notation trust policy document the notation verifier applies.
type SignaturePolicy struct {
	// Version counts changes to the policy and the anchors (read-only).
	Version      int64           `json:"version,omitempty"`
	Repositories []SignatureRule `json:"repositories"`
	// Notation is a notation trust policy document (version "1.0", trustPolicies with
	// registryScopes, signatureVerification, trustStores, trustedIdentities).
	Notation json.RawMessage `json:"notation,omitempty"`
	// RegistryHost is the host Coffer puts in front of a repository to match the notation
	// registryScopes (HOST/REPO) (read-only).
	RegistryHost string     `json:"registryHost,omitempty"`
	Updated      *time.Time `json:"updated,omitempty"`
}

// SignatureRule is the policy of the repositories Scope names: "team/app", "team/*"
// (everything under team/) or "*".
type SignatureRule struct {
	Scope string `json:"scope"`
	// Mode is off, audit or enforce.
	Mode string `json:"mode"`
	// Kinds are the signature kinds that count (default: every kind).
	Kinds []string `json:"kinds,omitempty"`
	// CosignKeys names the cosign anchors that count (default: every cosign anchor).
	CosignKeys []string `json:"cosignKeys,omitempty"`
	// Exempt lists principal object ids that may pull unverified images under enforce;
	// every such pull is audited.
	Exempt []string `json:"exempt,omitempty"`
	// Publishers says what identities that may push to the repository (registry/push:
	// AcrPush, Contributor, Owner) may read of an unverified image under enforce: "head"
	// (the default: a HEAD, as notation sign resolves an image before signing it; a GET is
	// refused as anyone's), "read" (GET and HEAD, for signers that GET the manifest, such
	// as cosign sign) or "refuse" (nothing: sign before the rule turns to enforce). Every
	// such pull is audited as signature.pull.exempt.
	Publishers string `json:"publishers,omitempty"`
	// RefusePublishers is the older spelling of "publishers": "refuse".
	RefusePublishers bool `json:"refusePublishers,omitempty"`
	// Platforms says how a platform manifest of an index is judged: "index" (default:
	// it passes when an index of the repository listing it verifies, or on its own
	// signature) or "each" (it needs its own signature).
	Platforms string `json:"platforms,omitempty"`
}

// SignatureVerification is the verdict on one manifest under the current policy.
type SignatureVerification struct {
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	Mode       string `json:"mode"`
	Scope      string `json:"scope,omitempty"`
	// Signatures are the kinds of signature found.
	Signatures []string `json:"signatures"`
	Verified   bool     `json:"verified"`
	// Kind and Anchor say which signature verified and under which anchor.
	Kind   string `json:"kind,omitempty"`
	Anchor string `json:"anchor,omitempty"`
	// Reason says why no signature verified.
	Reason string `json:"reason,omitempty"`
}

// SignatureAnchorRefresh is what re-reading a vault-held cosign key did.
type SignatureAnchorRefresh struct {
	Name string `json:"name"`
	// Changed: the versions trusted changed (every cached verification is recomputed).
	Changed bool `json:"changed"`
	// Versions are the key versions the anchor trusts now.
	Versions []string `json:"versions"`
	// Status says why the anchor trusts nothing ("" when the key was read).
	Status string `json:"status,omitempty"`
}
