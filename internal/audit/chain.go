package audit

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// The chain schemes (docs/audit.md). A record's scheme is stored with it; the MAC input
// starts with the scheme's label, so a record cannot be moved from one scheme to another.
const (
	// SchemeUnkeyed is the chain written before the audit key existed: SHA-256 with no
	// secret. Anyone holding the database can recompute it, so it is only accepted for the
	// records before the sequence the chain is keyed from.
	SchemeUnkeyed = 1
	// SchemeKeyed is HMAC-SHA256 under the audit key (DeriveKey of the vault root key).
	SchemeKeyed = 2
)

// The labels that separate what each MAC covers (docs/audit.md).
const (
	keyLabel        = "coffer audit chain v1"
	unkeyedLabel    = "coffer-audit-v1"
	keyedLabel      = "coffer-audit-v2"
	headLabel       = "coffer-audit-head-v1"
	checkpointLabel = "coffer-audit-checkpoint-v1"
)

// KeySize is the size of the audit key.
const KeySize = 32

// DeriveKey derives the audit key from the vault root key: HKDF-SHA256, no salt, info
// "coffer audit chain v1", 32 bytes. The root key can be cleared once this returns.
func DeriveKey(root []byte) ([]byte, error) {
	if len(root) != 32 {
		return nil, fmt.Errorf("derive the audit key: the root key must be 32 bytes, it is %d", len(root))
	}
	k, err := hkdf.Key(sha256.New, root, nil, keyLabel, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive the audit key: %w", err)
	}
	return k, nil
}

// encode writes each field as its length in bytes (decimal), a colon, the field and a
// semicolon, so that no two field lists encode the same.
func encode(h hash.Hash, fields []string) []byte {
	for _, f := range fields {
		h.Write([]byte(strconv.Itoa(len(f))))
		h.Write([]byte{':'})
		h.Write([]byte(f))
		h.Write([]byte{';'})
	}
	return h.Sum(nil)
}

// recordFields are the MAC input of a record after its label, in order.
func recordFields(label string, r Record) []string {
	return []string{
		label, r.PrevHash, strconv.FormatInt(r.Seq, 10), strconv.FormatInt(r.Time.UnixNano(), 10), r.Component,
		r.PrincipalID, r.PrincipalName, r.PrincipalKind, r.ClientAddr, r.UserAgent, r.Operation,
		r.Target, r.Resource, r.Algorithm, r.Result, r.Detail, strconv.FormatInt(r.Duration.Microseconds(), 10),
	}
}

// unkeyedHash is the scheme-1 hash of r.
func unkeyedHash(r Record) string {
	return hex.EncodeToString(encode(sha256.New(), recordFields(unkeyedLabel, r)))
}

// keyedHash is the scheme-2 hash of r under key.
func keyedHash(key []byte, r Record) string {
	return hex.EncodeToString(encode(hmac.New(sha256.New, key), recordFields(keyedLabel, r)))
}

// headMAC signs the database's high-water mark.
func headMAC(key []byte, h Head, keyedFrom int64) string {
	return hex.EncodeToString(encode(hmac.New(sha256.New, key),
		[]string{headLabel, strconv.FormatInt(h.Seq, 10), h.Hash, strconv.FormatInt(keyedFrom, 10)}))
}

// sameMAC compares two hex MACs in constant time.
func sameMAC(a, b string) bool { return hmac.Equal([]byte(a), []byte(b)) }

// Head names a point of the chain: a sequence number and the hash of that record.
type Head struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// String is SEQ:HASH, what ParseHead reads and verify --expect-head takes.
func (h Head) String() string { return strconv.FormatInt(h.Seq, 10) + ":" + h.Hash }

// ParseHead reads SEQ:HASH (the head that verify prints).
func ParseHead(s string) (Head, error) {
	seq, hash, ok := strings.Cut(strings.TrimSpace(s), ":")
	n, err := strconv.ParseInt(seq, 10, 64)
	if !ok || err != nil || n < 1 {
		return Head{}, errors.New("a head is SEQ:HASH, as verify prints it (12:9f86d0…), with SEQ from 1")
	}
	if b, err := hex.DecodeString(hash); err != nil || len(b) != sha256.Size || strings.ToLower(hash) != hash {
		return Head{}, errors.New("a head's HASH is 64 lower-case hex digits, as verify prints it")
	}
	return Head{Seq: n, Hash: hash}, nil
}
