package signatures

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want string // "" = valid
	}{
		{`{"repositories":[{"scope":"prod/*","mode":"enforce"},{"scope":"*","mode":"audit"},{"scope":"a/b","mode":"off"}]}`, ""},
		{`{"repositories":[{"scope":"prod/*","mode":"enforce","kinds":["notation","cosign-bundle"],"platforms":"each"}]}`, ""},
		{`{"repositories":[],"version":3,"registryHost":"h","updated":"2026-01-01T00:00:00Z"}`, ""}, // what show prints
		{`{"repositories":[{"scope":"x","mode":"on"}]}`, "mode"},
		{`{"repositories":[{"scope":"x","mode":"off"},{"scope":"x","mode":"audit"}]}`, "twice"},
		{`{"repositories":[{"scope":"x/**","mode":"off"}]}`, "scope"},
		{`{"repositories":[{"scope":"x","mode":"off","kinds":["gpg"]}]}`, "unknown kind"},
		{`{"repositories":[{"scope":"x","mode":"off","platforms":"some"}]}`, "platforms"},
		{`{"repositories":[]} {}`, "after"},
		{`[]`, "JSON"},
		{`{"repositories":[],"notation":{"version":"1.0","trustPolicies":[{"name":"p","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["ca:a"],"trustedIdentities":["*"]}]}}`, ""},
		{`{"repositories":[],"notation":{"version":"1.0","trustPolicies":[{"name":"p","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["ca:a b"],"trustedIdentities":["*"]}]}}`, "notation"},
		{`{"repositories":[],"notation":{"version":"1.0","trustPolicies":[{"name":"p","registryScopes":["*"],"signatureVerification":{"level":"loose"},"trustStores":["ca:a"],"trustedIdentities":["*"]}]}}`, "notation"},
		{`{"repositories":[],"notation":{"version":"1.0","trustPolicies":[{"name":"p","registryScopes":["bad scope"],"signatureVerification":{"level":"strict"},"trustStores":["ca:a"],"trustedIdentities":["*"]}]}}`, "notation"},
	} {
		_, _, err := ParsePolicy([]byte(tc.doc))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.doc, err)
		case tc.want != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one saying %q", tc.doc, err, tc.want)
		}
	}
}

func TestRuleMatch(t *testing.T) {
	c := &compiled{policy: Policy{Repositories: []Rule{{Scope: "*"}, {Scope: "team/*"}, {Scope: "team/app/*"}, {Scope: "team/app"}}}}
	for repo, want := range map[string]string{"other": "*", "team/x": "team/*", "team/app": "team/app", "team/app/sub": "team/app/*", "teamx/y": "*"} {
		if got := c.rule(repo); got == nil || got.Scope != want {
			t.Errorf("rule(%s) = %v, want %s", repo, got, want)
		}
	}
	if (&compiled{}).rule("x") != nil {
		t.Error("a rule applies with no policy")
	}
}

// FuzzParsePolicy: the policy parser never panics, and whatever it accepts it accepts
// again after a round trip (what 'policy show -o json' prints can be set back).
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(`{"repositories":[{"scope":"prod/*","mode":"enforce","cosignKeys":["ci"],"exempt":["id"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, _, err := ParsePolicy(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not marked invalid: %v", err)
			}
			return
		}
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := ParsePolicy(raw); err != nil {
			t.Fatalf("accepted %q but not its round trip %q: %v", data, raw, err)
		}
	})
}

// FuzzParseAnchor: the anchor parser never panics; what it accepts has material and
// fingerprints, and parses again from its stored material.
func FuzzParseAnchor(f *testing.F) {
	f.Add("ci", AnchorCosign, "", "", "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n")
	f.Add("ca", AnchorNotation, "ca", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "")
	f.Fuzz(func(t *testing.T, name, kind, storeType, certs, pub string) {
		a, err := ParseAnchor(AnchorSpec{Name: name, Kind: kind, StoreType: storeType, Certificates: certs, PublicKey: pub})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not marked invalid: %v", err)
			}
			return
		}
		if a.Material == "" || len(a.Prints) == 0 {
			t.Fatalf("accepted anchor without material: %+v", a)
		}
		again := AnchorSpec{Name: a.Name, Kind: a.Kind, StoreType: a.StoreType}
		if a.Kind == AnchorCosign {
			again.PublicKey = a.Material
		} else {
			again.Certificates = a.Material
		}
		if _, err := ParseAnchor(again); err != nil {
			t.Fatalf("stored material does not parse again: %v", err)
		}
	})
}

// FuzzParseKeyURL: the vault key URL parser (an operator's anchor --cosign-key-url) never
// panics, refuses with ErrInvalid, and what it accepts names an http(s) vault, a key and
// at most a version, and parses again from its parts to the same value.
func FuzzParseKeyURL(f *testing.F) {
	f.Add("https://team1.vault.localhost:5000/keys/cosign")
	f.Add("https://127.0.0.1:5101/keys/cosign/0123456789abcdef")
	f.Add("https://vault/keys/a/b/c")
	f.Add("https://user@vault/keys/a?x=1#y")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKeyURL(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not marked invalid: %v", err)
			}
			return
		}
		if (!strings.HasPrefix(k.Vault, "https://") && !strings.HasPrefix(k.Vault, "http://")) || k.Name == "" || strings.Contains(k.Name, "/") || strings.Contains(k.Version, "/") {
			t.Fatalf("accepted %q as %+v", s, k)
		}
		again := k.Vault + "/keys/" + k.Name
		if k.Version != "" {
			again += "/" + k.Version
		}
		k2, err := ParseKeyURL(again)
		if err != nil || k2 != k {
			t.Fatalf("%q parsed as %+v, but its canonical form %q as %+v, %v", s, k, again, k2, err)
		}
	})
}
