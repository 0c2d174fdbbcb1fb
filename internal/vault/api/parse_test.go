package api

import (
	"encoding/json"
	"testing"
)

func TestCheckAPIVersion(t *testing.T) {
	ok := []string{"7.0", "7.4", "7.5", "7.6", "7.6-preview.2", "2025-07-01", "2025-07-01-preview", "2027-01-01"}
	bad := []string{"", "2016-10-01", "2015-06-01", "6.2", "x", "7", "2025-7-1", "7.4; drop"}
	for _, v := range ok {
		if err := checkAPIVersion(v); err != nil {
			t.Errorf("%q refused: %v", v, err)
		}
	}
	for _, v := range bad {
		if checkAPIVersion(v) == nil {
			t.Errorf("%q accepted", v)
		}
	}
}

func TestUnixTime(t *testing.T) {
	cases := map[string]int64{`1700000000`: 1700000000, `1700000000.9`: 1700000000, `"1700000000"`: 1700000000}
	for in, want := range cases {
		var u unixTime
		if err := json.Unmarshal([]byte(in), &u); err != nil || int64(u) != want {
			t.Errorf("%s: %d %v", in, u, err)
		}
	}
	for _, in := range []string{`-1`, `"soon"`, `1e300`, `true`} {
		var u unixTime
		if json.Unmarshal([]byte(in), &u) == nil {
			t.Errorf("%s accepted", in)
		}
	}
}

// FuzzRequestParsing: request bodies and query values from the network never panic the
// parsers, and what parses has sane values.
func FuzzRequestParsing(f *testing.F) {
	f.Add([]byte(`{"kty":"RSA","key_size":2048,"attributes":{"exp":1700000000,"nbf":1.5}}`), "7.4")
	f.Add([]byte(`{"alg":"RSA-OAEP","value":"AAAA","iv":"AA==","tag":"+/"}`), "2025-07-01")
	f.Add([]byte(`{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P1D"},"action":{"type":"Rotate"}}]}`), "7.6-preview.1")
	f.Fuzz(func(t *testing.T, body []byte, version string) {
		checkAPIVersion(version)
		var c createKeyRequest
		if json.Unmarshal(body, &c) == nil && c.Attributes != nil {
			if tm := c.Attributes.Expires.time(); tm != nil && tm.Unix() < 0 {
				t.Fatalf("negative time %v", tm)
			}
		}
		var o keyOperationRequest
		json.Unmarshal(body, &o)
		var p rotationPolicyJSON
		json.Unmarshal(body, &p)
		var i importKeyRequest
		json.Unmarshal(body, &i)
		segments(string(body))
	})
}
