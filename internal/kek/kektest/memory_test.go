package kektest_test

import (
	"testing"

	"github.com/cofferhq/coffer/internal/kek/kektest"
)

func TestMemory(t *testing.T) {
	kektest.Run(t, func(t *testing.T) kektest.Fixture {
		m := kektest.NewMemory("https://mem.vault.test")
		must := func(s string, err error) string {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		must(m.CreateKey("kek", "RSA"))
		must(m.CreateKey("ec", "EC"))
		return kektest.Fixture{
			KEK:              m,
			RSAKey:           "https://mem.vault.test/keys/kek",
			ECKey:            "https://mem.vault.test/keys/ec",
			MissingKey:       "https://mem.vault.test/keys/missing",
			NewVersion:       func(t *testing.T) string { return must(m.CreateKey("kek", "RSA")) },
			Revoke:           func(t *testing.T) { m.Deny("get", "wrapKey", "unwrapKey") },
			Restore:          func(t *testing.T) { m.Allow("get", "wrapKey", "unwrapKey") },
			SetEnabled:       func(t *testing.T, on bool) { m.SetEnabled("kek", on) },
			SetNetworkDenied: func(t *testing.T, denied bool) { m.SetNetworkDenied(denied) },
		}
	})
}
