package seal

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

type vector struct {
	Name        string   `json:"name"`
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
			sealed, err := Seal(bytes.NewReader(rnd), root, v.Generation, v.SegmentSize, unhex(t, v.Plaintext))
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(sealed); got != v.Sealed {
				t.Fatalf("sealed =\n%s\nwant\n%s", got, v.Sealed)
			}
			pt, err := Open(unhex(t, v.Sealed), func(gen uint32) ([]byte, error) { return root, nil })
			if err != nil || hex.EncodeToString(pt) != v.Plaintext {
				t.Fatalf("Open = %x, %v", pt, err)
			}
			if !strings.Contains(docText, v.Sealed) {
				t.Errorf("docs/seal-format.md does not show the sealed bytes of vector %q", v.Name)
			}
		})
	}
}
