package keyprovider_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"github.com/cofferhq/coffer/internal/imagecrypt/keyprovider"
)

// vector is the test vector of docs/image-encryption.md.
type vector struct {
	AESKey   string          `json:"aesKeyHex"`
	Nonce    string          `json:"nonceHex"`
	OptsData string          `json:"optsData"`
	KID      string          `json:"kid"`
	Wrapped  string          `json:"wrappedKeyHex"`
	Envelope json.RawMessage `json:"envelope"`
}

// TestEnvelopeVector: Seal of the vector's inputs gives the recorded envelope, it opens to
// the options, and a changed byte anywhere (ciphertext, kid, version) is refused.
func TestEnvelopeVector(t *testing.T) {
	raw, err := os.ReadFile("testdata/envelope-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	key, _ := hex.DecodeString(v.AESKey)
	nonce, _ := hex.DecodeString(v.Nonce)
	wrapped, _ := hex.DecodeString(v.Wrapped)
	e, err := keyprovider.Seal(key, nonce, []byte(v.OptsData), v.KID, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(e)
	var want bytes.Buffer
	json.Compact(&want, v.Envelope)
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("envelope\n%s\nwant\n%s", got, want.Bytes())
	}
	parsed, err := keyprovider.ParseEnvelope(got)
	if err != nil {
		t.Fatal(err)
	}
	if opts, err := parsed.Open(key); err != nil || string(opts) != v.OptsData {
		t.Fatalf("open: %q, %v", opts, err)
	}
	bad := parsed
	bad.CT = append([]byte{}, parsed.CT...)
	bad.CT[3] ^= 1
	if _, err := bad.Open(key); err == nil {
		t.Fatal("a flipped ciphertext bit opened")
	}
	bad = parsed
	bad.KID = parsed.KID + "x"
	if _, err := bad.Open(key); err == nil {
		t.Fatal("a relabelled key id opened")
	}
	bad = parsed
	bad.V = 2
	if _, err := bad.Open(key); err == nil {
		t.Fatal("another version opened")
	}
	if os.Getenv("COFFER_PRINT_VECTOR") != "" {
		t.Logf("%s", got)
	}
}
