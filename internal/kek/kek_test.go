package kek

import (
	"errors"
	"testing"
)

func TestParseKeyID(t *testing.T) {
	cases := []struct {
		in, vault, name, version string
	}{
		{"https://v.vault.localhost/keys/reg", "https://v.vault.localhost", "reg", ""},
		{"https://v.vault.localhost/keys/reg/", "https://v.vault.localhost", "reg", ""},
		{"https://127.0.0.1:8443/keys/reg/0123abcd", "https://127.0.0.1:8443", "reg", "0123abcd"},
	}
	for _, c := range cases {
		id, err := ParseKeyID(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if id.Vault != c.vault || id.Name != c.name || id.Version != c.version {
			t.Errorf("%s: %+v", c.in, id)
		}
		if id.Versionless() != c.vault+"/keys/"+c.name {
			t.Errorf("%s: versionless = %s", c.in, id.Versionless())
		}
	}
	for _, bad := range []string{"", "ftp://h/keys/a", "https:///keys/a", "https://h/prefix/keys/a", "https://h/keys/a/b/c",
		"https://h/keys//v", "https://h/keys/a?x=1", "https://u:p@h/keys/a", "https://h/keys/a#f"} {
		if _, err := ParseKeyID(bad); !errors.Is(err, ErrInvalidKeyID) {
			t.Errorf("ParseKeyID(%q) = %v, want ErrInvalidKeyID", bad, err)
		}
	}
}

func TestRecordAlgorithm(t *testing.T) {
	raw := []byte{0, 1, 2, 3}
	if got := RecordAlgorithm(Algorithm, raw); string(got) != string(raw) {
		t.Fatalf("RSA-OAEP-256 values are stored bare, got %q", got)
	}
	rec := RecordAlgorithm(FallbackAlgorithm, raw)
	alg, back := RecordedAlgorithm(rec)
	if alg != FallbackAlgorithm || string(back) != string(raw) {
		t.Fatalf("round trip: %q %q", alg, back)
	}
	// A bare value, and a marker naming an algorithm Coffer never records, are RSA-OAEP-256.
	for _, w := range [][]byte{raw, []byte("\x00coffer-kek-alg\x00RSA1_5\x00xyz"), []byte("\x00coffer-kek-alg\x00RSA-OAEP")} {
		if alg, back := RecordedAlgorithm(w); alg != Algorithm || string(back) != string(w) {
			t.Errorf("%q: %q %q", w, alg, back)
		}
	}
}

func FuzzRecordedAlgorithm(f *testing.F) {
	f.Add([]byte{})
	f.Add(RecordAlgorithm(FallbackAlgorithm, []byte("abc")))
	f.Add([]byte("\x00coffer-kek-alg\x00"))
	f.Fuzz(func(t *testing.T, w []byte) {
		alg, raw := RecordedAlgorithm(w)
		if alg != Algorithm && alg != FallbackAlgorithm {
			t.Fatalf("algorithm %q", alg)
		}
		if alg == FallbackAlgorithm && string(RecordAlgorithm(alg, raw)) != string(w) {
			t.Fatalf("not the value recorded")
		}
	})
}
