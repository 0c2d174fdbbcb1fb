package seal

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

type vector struct {
	Name        string   `json:"name"`
	Version     int      `json:"version"`    // 1, or 2: bound to ObjectName
	ObjectName  string   `json:"objectName"` // version 2: the name the object is bound to
	RootKey     string   `json:"rootKey"`
	Generation  uint32   `json:"generation"`
	SegmentSize int      `json:"segmentSize"`
	ObjectID    string   `json:"objectId"`
	Nonces      []string `json:"nonces"`
	Plaintext   string   `json:"plaintext"`
	DataKey     string   `json:"dataKey"`
	Sealed      string   `json:"sealed"`
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVectors checks the encoder and decoder against the test vectors of
// docs/seal-format.md (kept in testdata/vectors.json), and that the document shows them.
func TestVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/seal-format.md")
	if err != nil {
		t.Fatal(err)
	}
	docText := strings.Join(strings.Fields(string(doc)), "")
	if len(vs) < 3 {
		t.Fatalf("only %d vectors", len(vs))
	}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			root := unhex(t, v.RootKey)
			rnd := unhex(t, v.ObjectID)
			for _, n := range v.Nonces {
				rnd = append(rnd, unhex(t, n)...)
			}
			var id [IDSize]byte
			copy(id[:], unhex(t, v.ObjectID))
			dk, err := DeriveDataKey(root, id)
			if err != nil || hex.EncodeToString(dk) != v.DataKey {
				t.Fatalf("data key = %x, %v; want %s", dk, err, v.DataKey)
			}
			var sealed []byte
			switch v.Version {
			case 1:
				sealed, err = Seal(bytes.NewReader(rnd), root, v.Generation, v.SegmentSize, unhex(t, v.Plaintext))
			case 2:
				sealed, err = SealNamed(bytes.NewReader(rnd), root, v.Generation, v.SegmentSize, v.ObjectName, unhex(t, v.Plaintext))
			default:
				t.Fatalf("vector of version %d", v.Version)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(sealed); got != v.Sealed {
				t.Fatalf("sealed =\n%s\nwant\n%s", got, v.Sealed)
			}
			keyFor := func(gen uint32) ([]byte, error) { return root, nil }
			pt, err := OpenNamed(unhex(t, v.Sealed), v.ObjectName, keyFor)
			if err != nil || hex.EncodeToString(pt) != v.Plaintext {
				t.Fatalf("OpenNamed = %x, %v", pt, err)
			}
			// A version 2 object opens under its own name only; version 1 binds none.
			pt, err = OpenNamed(unhex(t, v.Sealed), v.ObjectName+"x", keyFor)
			if v.Version == 2 && !errors.Is(err, ErrAuth) {
				t.Fatalf("OpenNamed under another name = %x, %v; want ErrAuth", pt, err)
			}
			if v.Version == 1 && err != nil {
				t.Fatalf("version 1 under another name: %v", err)
			}
			if !strings.Contains(docText, v.Sealed) {
				t.Errorf("docs/seal-format.md does not show the sealed bytes of vector %q", v.Name)
			}
		})
	}
}
