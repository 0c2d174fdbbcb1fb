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
