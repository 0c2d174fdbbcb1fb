package wire

import "time"

// Repository summarises a repository.
type Repository struct {
	Name          string    `json:"name"`
	Created       time.Time `json:"created"`
	ManifestCount int       `json:"manifestCount"`
	TagCount      int       `json:"tagCount"`
	BlobCount     int       `json:"blobCount"`
	// Size is the sum of the sizes of the blobs linked to the repository.
	Size int64 `json:"size"`
	// ClientEncrypted (repository show only; absent from the list) says whether a tagged
	// image of the repository has client-encrypted layers (ocicrypt's +encrypted media
	// types), and EncryptedTags how many tags point to one.
	ClientEncrypted *bool `json:"clientEncrypted,omitempty"`
	EncryptedTags   int   `json:"encryptedTags,omitempty"`
}

// RepositoryList is a page of repositories; Next is the "last" value for the next page.
type RepositoryList struct {
	Repositories []Repository `json:"repositories"`
	Next         string       `json:"next,omitempty"`
}

// Tag is one tag of a repository.
type Tag struct {
	Name    string    `json:"name"`
	Digest  string    `json:"digest"`
	Updated time.Time `json:"updated"`
	// EncryptedLayers counts the layers of the tagged image (of all its platforms, for an
	// index) that are client-encrypted (ocicrypt's +encrypted media types); 0: none.
	EncryptedLayers int `json:"encryptedLayers,omitempty"`
	// Signatures are the kinds of signature stored for the tag's manifest (notation,
	// cosign, cosign-oci, cosign-bundle); Verified says whether one verifies under the
	// current signature policy, Anchor under which anchor, SignaturePolicy is the mode
	// that applies to the repository and SignatureReason why nothing verified.
	Signatures      []string `json:"signatures,omitempty"`
	Verified        *bool    `json:"verified,omitempty"`
	Anchor          string   `json:"anchor,omitempty"`
	SignaturePolicy string   `json:"signaturePolicy,omitempty"`
	SignatureReason string   `json:"signatureReason,omitempty"`
}

// TagList is the answer of GET /registry/tags.
type TagList struct {
	Repository string `json:"repository"`
	Tags       []Tag  `json:"tags"`
}

// Blob is a stored blob.
type Blob struct {
	Digest  string    `json:"digest"`
	Size    int64     `json:"size"`
	Touched time.Time `json:"touched"`
}

// GCReport is what a garbage collection removed (or, dry, would remove).
type GCReport struct {
	DryRun         bool      `json:"dryRun"`
	Cutoff         time.Time `json:"cutoff"`
	StaleLinks     int       `json:"staleLinks"`
	Blobs          []Blob    `json:"blobs"`
	BytesFreed     int64     `json:"bytesFreed"`
	OrphanFiles    int       `json:"orphanFiles"`
	ExpiredUploads int       `json:"expiredUploads"`
}

// GCEvent is one line of a streamed collection (Accept: application/x-ndjson): progress,
// then the report (or an error).
type GCEvent struct {
	Phase  string    `json:"phase,omitempty"`
	Done   int       `json:"done,omitempty"`
	Total  int       `json:"total,omitempty"`
	Report *GCReport `json:"report,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// EncryptionStatus is how the registry's content is encrypted at rest
// (GET /registry/encryption), in the shape `az acr encryption show` prints.
type EncryptionStatus struct {
	// Status is "enabled" when a customer-managed key is in use, "disabled" when the
	// platform-managed key is; EncryptedAtRest is true either way.
	Status             string             `json:"status"`
	EncryptedAtRest    bool               `json:"encryptedAtRest"`
	KeySource          string             `json:"keySource"`
	KeyVaultProperties KeyVaultProperties `json:"keyVaultProperties"`
	// KeyAccessible says whether the registry could use its key at the last check, and
	// KeyAccessError gives the vault's error when it could not.
	KeyAccessible      bool       `json:"keyAccessible"`
	KeyAccessError     string     `json:"keyAccessError,omitempty"`
	LastKeyAccessCheck *time.Time `json:"lastKeyAccessCheck,omitempty"`
	// RootKeyGeneration is the generation of the root key new content is sealed under;
	// `coffer registry encryption new-root-key` adds one.
	RootKeyGeneration uint32 `json:"rootKeyGeneration"`
}

// KeyVaultProperties describe the key encryption key in use.
type KeyVaultProperties struct {
	Identity                 string     `json:"identity"`
	KeyIdentifier            string     `json:"keyIdentifier"`
	VersionedKeyIdentifier   string     `json:"versionedKeyIdentifier"`
	KeyRotationEnabled       bool       `json:"keyRotationEnabled"`
	LastKeyRotationTimestamp *time.Time `json:"lastKeyRotationTimestamp,omitempty"`
}

// EncryptionKeyRequest is the body of POST /registry/encryption/enable and /rotate-key.
type EncryptionKeyRequest struct {
	// KeyEncryptionKey is the key id of an RSA key, https://VAULT-HOST/keys/NAME[/VERSION].
	KeyEncryptionKey string `json:"keyEncryptionKey"`
	// Identity is the managed identity that reaches the key, or [system].
	Identity string `json:"identity,omitempty"`
}
