package wire

import "time"

// NetworkRules are a vault's network rules (networkAcls).
type NetworkRules struct {
	// DefaultAction is Allow or Deny.
	DefaultAction string `json:"defaultAction"`
	// IPRules are addresses or CIDR ranges allowed when DefaultAction is Deny.
	IPRules []string `json:"ipRules"`
	// Bypass is CofferServices (Coffer's own services pass whatever the rules say) or None.
	Bypass string `json:"bypass"`
}

// Vault is a vault's properties: the answer of the vault routes, and the body of
// POST /vaults (where vaultUri, created and updated are ignored).
type Vault struct {
	Name                    string       `json:"name"`
	URL                     string       `json:"vaultUri"`
	EnableRbacAuthorization bool         `json:"enableRbacAuthorization"`
	SoftDeleteRetentionDays int          `json:"softDeleteRetentionInDays"`
	EnablePurgeProtection   bool         `json:"enablePurgeProtection"`
	NetworkRules            NetworkRules `json:"networkAcls"`
	// Port, when not zero, is a port of the vault's own.
	Port int `json:"port,omitempty"`
	// HSM: the vault keeps its -HSM keys in the server's PKCS#11 token (set at creation).
	HSM     bool      `json:"hsm,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// VaultUpdate is the body of PATCH /vaults/{vault}: absent members stay as they are.
type VaultUpdate struct {
	EnableRbacAuthorization *bool         `json:"enableRbacAuthorization,omitempty"`
	SoftDeleteRetentionDays *int          `json:"softDeleteRetentionInDays,omitempty"`
	EnablePurgeProtection   *bool         `json:"enablePurgeProtection,omitempty"`
	NetworkRules            *NetworkRules `json:"networkAcls,omitempty"`
	Port                    *int          `json:"port,omitempty"`
}

// JWK is a JSON Web Key in Key Vault's shape. The API answers public members only;
// private members appear in an import request.
type JWK struct {
	Kid    string   `json:"kid,omitempty"`
	Kty    string   `json:"kty,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
	N      Bytes    `json:"n,omitempty"`
	E      Bytes    `json:"e,omitempty"`
	D      Bytes    `json:"d,omitempty"`
	DP     Bytes    `json:"dp,omitempty"`
	DQ     Bytes    `json:"dq,omitempty"`
	QI     Bytes    `json:"qi,omitempty"`
	P      Bytes    `json:"p,omitempty"`
	Q      Bytes    `json:"q,omitempty"`
	K      Bytes    `json:"k,omitempty"`
	KeyHSM Bytes    `json:"key_hsm,omitempty"`
	Crv    string   `json:"crv,omitempty"`
	X      Bytes    `json:"x,omitempty"`
	Y      Bytes    `json:"y,omitempty"`
}

// KeyAttributes are a key version's attributes.
type KeyAttributes struct {
	Enabled         bool       `json:"enabled"`
	NotBefore       *time.Time `json:"nbf,omitempty"`
	Expires         *time.Time `json:"exp,omitempty"`
	Created         time.Time  `json:"created"`
	Updated         time.Time  `json:"updated"`
	RecoveryLevel   string     `json:"recoveryLevel"`
	RecoverableDays int        `json:"recoverableDays"`
	Exportable      bool       `json:"exportable"`
	HSMPlatform     string     `json:"hsmPlatform,omitempty"`
}

// Key is one key version (public material only).
type Key struct {
	ID         string            `json:"kid"`
	Vault      string            `json:"vault"`
	Name       string            `json:"name"`
	Version    string            `json:"version"`
	JWK        JWK               `json:"key"`
	Attributes KeyAttributes     `json:"attributes"`
	Tags       map[string]string `json:"tags"`
	Managed    bool              `json:"managed"`
	// Size is the key size in bits.
	Size int `json:"keySize"`
}

// DeletedKey is a soft-deleted key (its newest version).
type DeletedKey struct {
	Key
	RecoveryID         string    `json:"recoveryId"`
	DeletedDate        time.Time `json:"deletedDate"`
	ScheduledPurgeDate time.Time `json:"scheduledPurgeDate"`
}

// KeyList is a page of keys or key versions; SkipToken asks for the next page
// (?skiptoken=).
type KeyList struct {
	Value     []Key  `json:"value"`
	SkipToken string `json:"skipToken,omitempty"`
}

// DeletedKeyList is a page of deleted keys.
type DeletedKeyList struct {
	SkipToken string       `json:"skipToken"`
	Value     []DeletedKey `json:"value"`
}

// CreateKeyRequest is the body of POST /vaults/{vault}/keys/{key}/create.
type CreateKeyRequest struct {
	Kty       string            `json:"kty"`
	Size      int               `json:"size,omitempty"`
	Curve     string            `json:"curve,omitempty"`
	KeyOps    []string          `json:"keyOps,omitempty"`
	Enabled   *bool             `json:"enabled,omitempty"`
	NotBefore *time.Time        `json:"nbf,omitempty"`
	Expires   *time.Time        `json:"exp,omitempty"`
	Tags      map[string]string `json:"tags,omitempty"`
}

// ImportKeyRequest is the body of PUT /vaults/{vault}/keys/{key}.
type ImportKeyRequest struct {
	Key       JWK               `json:"key"`
	HSM       bool              `json:"hsm,omitempty"`
	Enabled   *bool             `json:"enabled,omitempty"`
	NotBefore *time.Time        `json:"nbf,omitempty"`
	Expires   *time.Time        `json:"exp,omitempty"`
	Tags      map[string]string `json:"tags,omitempty"`
}

// UpdateKeyRequest is the body of PATCH /vaults/{vault}/keys/{key}. A zero time clears
// nbf or exp; tags, when present, replace them all.
type UpdateKeyRequest struct {
	KeyOps    []string           `json:"keyOps,omitempty"`
	Enabled   *bool              `json:"enabled,omitempty"`
	NotBefore *time.Time         `json:"nbf,omitempty"`
	Expires   *time.Time         `json:"exp,omitempty"`
	Tags      *map[string]string `json:"tags,omitempty"`
}

// LifetimeTrigger says when a lifetime action happens (ISO 8601 durations).
type LifetimeTrigger struct {
	TimeAfterCreate  string `json:"timeAfterCreate,omitempty"`
	TimeBeforeExpiry string `json:"timeBeforeExpiry,omitempty"`
}

// LifetimeActionType is Rotate or Notify.
type LifetimeActionType struct {
	Type string `json:"type"`
}

// LifetimeAction is one action of a rotation policy.
type LifetimeAction struct {
	Trigger LifetimeTrigger    `json:"trigger"`
	Action  LifetimeActionType `json:"action"`
}

// RotationPolicyAttributes hold the lifetime of new versions (expiryTime).
type RotationPolicyAttributes struct {
	ExpiryTime string    `json:"expiryTime,omitempty"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
}

// RotationPolicy says when a key is rotated and how long new versions live: the answer of
// GET and the body of PUT /vaults/{vault}/keys/{key}/rotationpolicy.
type RotationPolicy struct {
	ID              string                   `json:"id"`
	LifetimeActions []LifetimeAction         `json:"lifetimeActions"`
	Attributes      RotationPolicyAttributes `json:"attributes"`
}

// KeyBackup is a sealed backup of a key (the answer of .../backup, the body of
// POST /vaults/{vault}/restore).
type KeyBackup struct {
	Value Bytes `json:"value"`
}

// KeyOpRequest is the body of POST /vaults/{vault}/keys/{key}/{op}, op one of wrapkey,
// unwrapkey, encrypt, decrypt, sign, verify.
type KeyOpRequest struct {
	Version   string `json:"version,omitempty"`
	Alg       string `json:"alg"`
	Value     Bytes  `json:"value,omitempty"`
	IV        Bytes  `json:"iv,omitempty"`
	AAD       Bytes  `json:"aad,omitempty"`
	Tag       Bytes  `json:"tag,omitempty"`
	Digest    Bytes  `json:"digest,omitempty"`
	Signature Bytes  `json:"signature,omitempty"`
}

// KeyOpResult is the answer of a key operation: the kid of the version used and the
// result (verify answers verified).
type KeyOpResult struct {
	Kid      string `json:"kid"`
	Value    Bytes  `json:"value,omitempty"`
	IV       Bytes  `json:"iv,omitempty"`
	Tag      Bytes  `json:"tag,omitempty"`
	Verified *bool  `json:"verified,omitempty"`
}

// AuditRecord is one record of the audit trail.
type AuditRecord struct {
	Seq           int64     `json:"seq"`
	Time          time.Time `json:"time"`
	Component     string    `json:"component"`
	PrincipalID   string    `json:"principalId,omitempty"`
	PrincipalName string    `json:"principalName,omitempty"`
	PrincipalKind string    `json:"principalKind,omitempty"`
	ClientAddr    string    `json:"clientAddress,omitempty"`
	UserAgent     string    `json:"userAgent,omitempty"`
	Operation     string    `json:"operation"`
	Target        string    `json:"target,omitempty"`
	Resource      string    `json:"resource,omitempty"`
	Algorithm     string    `json:"algorithm,omitempty"`
	// Result is success, denied or failure; Detail says why for the last two.
	Result   string `json:"result"`
	Detail   string `json:"detail,omitempty"`
	PrevHash string `json:"prevHash"`
	Hash     string `json:"hash"`
	// DurationMicros is how long the operation took, in microseconds.
	DurationMicros int64 `json:"durationMicros"`
}

// Duration is the record's duration.
func (r AuditRecord) Duration() time.Duration {
	return time.Duration(r.DurationMicros) * time.Microsecond
}

// AuditVerifyResult is the answer of GET /audit/verify.
type AuditVerifyResult struct {
	OK       bool   `json:"ok"`
	Records  int64  `json:"records"`
	HeadSeq  int64  `json:"headSeq"`
	HeadHash string `json:"headHash"`
	// BrokenAt is the first record whose chain does not hold, and Problem says how.
	BrokenAt int64  `json:"brokenAt,omitempty"`
	Problem  string `json:"problem,omitempty"`
	// KeyedFrom is the first record of the keyed (HMAC) chain; records before it were
	// written before the chain was keyed and use the unkeyed scheme (docs/audit.md).
	KeyedFrom int64 `json:"keyedFrom,omitempty"`
	// CheckpointSeq is the sequence of the signed checkpoint beside the root key that the
	// trail was checked against (0: none).
	CheckpointSeq int64 `json:"checkpointSeq,omitempty"`
	// ExpectedHead is the head (SEQ:HASH) the caller asked to check, if any.
	ExpectedHead string `json:"expectedHead,omitempty"`
}
