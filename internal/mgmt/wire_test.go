package mgmt_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/seal/keyring"
)

// TestEncryptionStatusIsKeyringStatus: GET /registry/encryption answers keyring.Status;
// wire.EncryptionStatus must decode it and encode it back byte for byte.
func TestEncryptionStatusIsKeyringStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, st := range []keyring.Status{
		{Status: "enabled", EncryptedAtRest: true, KeySource: "customer", KeyAccessible: false, KeyAccessError: "e", LastKeyAccessCheck: &now,
			KeyVaultProperties: keyring.KeyVaultProperties{Identity: "i", KeyIdentifier: "k", VersionedKeyIdentifier: "v", KeyRotationEnabled: true, LastKeyRotationTimestamp: &now}},
		{},
	} {
		a, _ := json.Marshal(st)
		var w wire.EncryptionStatus
		dec := json.NewDecoder(bytesReader(a))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&w); err != nil {
			t.Fatalf("decode %s: %v", a, err)
		}
		b, _ := json.Marshal(w)
		if string(a) != string(b) {
			t.Errorf("encryption status on the wire changed:\nwas %s\nnow %s", a, b)
		}
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
