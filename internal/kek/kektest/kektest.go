// Package kektest is the shared test suite of kek.KEK drivers (Run) and an in-memory KEK
// (Memory) for tests of code built on a KEK.
package kektest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/kek"
)

// Fixture is one driver under test with the vault-side controls the suite needs. Every
// function acts on the vault directly (as its administrator), not through the driver.
type Fixture struct {
	KEK kek.KEK
	// RSAKey is the versionless id of an RSA key the driver's identity may get, wrap and
	// unwrap with.
	RSAKey string
	// ECKey is the id of an EC key in a vault the identity may use.
	ECKey string
	// MissingKey is the id of a key that does not exist, in the same vault as RSAKey.
	MissingKey string
	// NewVersion creates a new version of RSAKey and returns its versioned id.
	NewVersion func(t *testing.T) string
	// Revoke removes the identity's get, wrapKey and unwrapKey access to RSAKey; Restore
	// gives it back.
	Revoke, Restore func(t *testing.T)
	// SetEnabled disables or enables RSAKey (every version).
	SetEnabled func(t *testing.T, enabled bool)
	// SetNetworkDenied, when the driver's vault has network rules, makes them deny (true)
	// or allow (false) the driver's calls. Nil skips the network test.
	SetNetworkDenied func(t *testing.T, denied bool)
}

// Run runs the suite; newFixture gives a fresh fixture (a new RSA key at least) per test.
func Run(t *testing.T, newFixture func(t *testing.T) Fixture) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f Fixture)
	}{
		{"GetKeyResolvesNewestVersion", testGetKey},
		{"WrapUnwrapRoundTrip", testRoundTrip},
		{"VersionPinning", testVersionPinning},
		{"RejectsNonRSAKeys", testRejectsNonRSA},
		{"MissingKey", testMissingKey},
		{"RevokeAndRestore", testRevokeRestore},
		{"DisabledKey", testDisabled},
		{"NetworkDenied", testNetworkDenied},
		{"Probe", testProbe},
		{"InvalidKeyID", testInvalidKeyID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newFixture(t)) })
	}
}

func secret(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func versionOf(t *testing.T, kid string) string {
	t.Helper()
	id, err := kek.ParseKeyID(kid)
	if err != nil {
		t.Fatalf("driver returned an unparsable kid %q: %v", kid, err)
	}
	if id.Version == "" {
		t.Fatalf("driver returned a versionless kid %q", kid)
	}
	return id.Version
}

func testGetKey(t *testing.T, f Fixture) {
	ctx := context.Background()
	info, err := f.KEK.GetKey(ctx, f.RSAKey)
	if err != nil {
		t.Fatal(err)
	}
	versionOf(t, info.KID)
	if !strings.HasPrefix(info.KID, f.RSAKey+"/") {
		t.Errorf("KID %s is not a version of %s", info.KID, f.RSAKey)
	}
	if !kek.SupportedType(info.Type) || !info.Enabled {
		t.Errorf("GetKey = %+v, want an enabled RSA key", info)
	}
	newer := f.NewVersion(t)
	info, err = f.KEK.GetKey(ctx, f.RSAKey)
	if err != nil {
		t.Fatal(err)
	}
	if info.KID != newer {
		t.Errorf("after a new version, versionless GetKey = %s, want %s", info.KID, newer)
	}
	pinned, err := f.KEK.GetKey(ctx, info.KID)
	if err != nil || pinned.KID != info.KID {
		t.Errorf("versioned GetKey = %+v, %v", pinned, err)
	}
}

func testRoundTrip(t *testing.T, f Fixture) {
	ctx := context.Background()
	s := secret(t)
	kid, wrapped, err := f.KEK.WrapKey(ctx, f.RSAKey, s)
	if err != nil {
		t.Fatal(err)
	}
	versionOf(t, kid)
	if bytes.Contains(wrapped, s) || len(wrapped) < 256 {
		t.Fatalf("wrapped key (%d bytes) does not look RSA-wrapped", len(wrapped))
	}
	back, err := f.KEK.UnwrapKey(ctx, kid, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, s) {
		t.Fatal("unwrap returned a different secret")
	}
	// Two wraps of one secret differ (OAEP is randomized) and both unwrap.
	_, wrapped2, err := f.KEK.WrapKey(ctx, kid, s)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(wrapped, wrapped2) {
		t.Fatal("two wraps of the same secret are identical")
	}
	damaged := bytes.Clone(wrapped)
	damaged[10] ^= 1
	if _, err := f.KEK.UnwrapKey(ctx, kid, damaged); err == nil {
		t.Fatal("a damaged wrapped key unwrapped")
	}
}

func testVersionPinning(t *testing.T, f Fixture) {
	ctx := context.Background()
	s := secret(t)
	oldKID, oldWrapped, err := f.KEK.WrapKey(ctx, f.RSAKey, s)
	if err != nil {
		t.Fatal(err)
	}
	newKID := f.NewVersion(t)
	if newKID == oldKID {
		t.Fatal("NewVersion returned the old version")
	}
	kid, _, err := f.KEK.WrapKey(ctx, oldKID, s)
	if err != nil || kid != oldKID {
		t.Fatalf("wrap with a pinned version used %s (%v), want %s", kid, err, oldKID)
	}
	kid, _, err = f.KEK.WrapKey(ctx, f.RSAKey, s)
	if err != nil || kid != newKID {
		t.Fatalf("versionless wrap used %s (%v), want the newest %s", kid, err, newKID)
	}
	back, err := f.KEK.UnwrapKey(ctx, oldKID, oldWrapped)
	if err != nil || !bytes.Equal(back, s) {
		t.Fatalf("the old version no longer unwraps: %v", err)
	}
}

func testRejectsNonRSA(t *testing.T, f Fixture) {
	_, err := kek.CheckKey(context.Background(), f.KEK, f.ECKey)
	if !errors.Is(err, kek.ErrUnsupportedKeyType) {
		t.Fatalf("CheckKey(EC key) = %v, want ErrUnsupportedKeyType", err)
	}
	if !strings.Contains(err.Error(), "EC") {
		t.Fatalf("the error does not name the key type: %v", err)
	}
}

func testMissingKey(t *testing.T, f Fixture) {
	ctx := context.Background()
	if _, err := f.KEK.GetKey(ctx, f.MissingKey); !errors.Is(err, kek.ErrNotFound) {
		t.Errorf("GetKey(missing) = %v, want ErrNotFound", err)
	}
	if _, _, err := f.KEK.WrapKey(ctx, f.MissingKey, secret(t)); !errors.Is(err, kek.ErrNotFound) {
		t.Errorf("WrapKey(missing) = %v, want ErrNotFound", err)
	}
}

func testRevokeRestore(t *testing.T, f Fixture) {
	ctx := context.Background()
	s := secret(t)
	kid, wrapped, err := f.KEK.WrapKey(ctx, f.RSAKey, s)
	if err != nil {
		t.Fatal(err)
	}
	f.Revoke(t)
	if _, err := f.KEK.UnwrapKey(ctx, kid, wrapped); !errors.Is(err, kek.ErrForbidden) {
		t.Errorf("unwrap after revoke = %v, want ErrForbidden", err)
	}
	if _, err := f.KEK.GetKey(ctx, f.RSAKey); !errors.Is(err, kek.ErrForbidden) {
		t.Errorf("get after revoke = %v, want ErrForbidden", err)
	}
	if _, err := kek.Probe(ctx, f.KEK, f.RSAKey); !errors.Is(err, kek.ErrForbidden) || !strings.Contains(err.Error(), "get") {
		t.Errorf("probe after revoke = %v, want ErrForbidden naming the get permission", err)
	}
	f.Restore(t)
	back, err := f.KEK.UnwrapKey(ctx, kid, wrapped)
	if err != nil || !bytes.Equal(back, s) {
		t.Fatalf("unwrap after restore: %v", err)
	}
}

func testDisabled(t *testing.T, f Fixture) {
	ctx := context.Background()
	s := secret(t)
	kid, wrapped, err := f.KEK.WrapKey(ctx, f.RSAKey, s)
	if err != nil {
		t.Fatal(err)
	}
	f.SetEnabled(t, false)
	if _, err := f.KEK.UnwrapKey(ctx, kid, wrapped); !errors.Is(err, kek.ErrDisabled) {
		t.Errorf("unwrap with a disabled key = %v, want ErrDisabled", err)
	}
	if _, err := kek.Probe(ctx, f.KEK, f.RSAKey); !errors.Is(err, kek.ErrDisabled) {
		t.Errorf("probe of a disabled key = %v, want ErrDisabled", err)
	}
	f.SetEnabled(t, true)
	if back, err := f.KEK.UnwrapKey(ctx, kid, wrapped); err != nil || !bytes.Equal(back, s) {
		t.Fatalf("unwrap after re-enabling: %v", err)
	}
}

func testProbe(t *testing.T, f Fixture) {
	info, err := kek.Probe(context.Background(), f.KEK, f.RSAKey)
	if err != nil {
		t.Fatal(err)
	}
	versionOf(t, info.KID)
}

func testInvalidKeyID(t *testing.T, f Fixture) {
	for _, id := range []string{"", "not a url", "https://host/secrets/x", "https://host/keys", "https://host/keys/a/b/c"} {
		if _, err := kek.CheckKey(context.Background(), f.KEK, id); !errors.Is(err, kek.ErrInvalidKeyID) {
			t.Errorf("CheckKey(%q) = %v, want ErrInvalidKeyID", id, err)
		}
	}
}

func testNetworkDenied(t *testing.T, f Fixture) {
	if f.SetNetworkDenied == nil {
		t.Skip("the fixture's vault has no network rules")
	}
	ctx := context.Background()
	s := secret(t)
	kid, wrapped, err := f.KEK.WrapKey(ctx, f.RSAKey, s)
	if err != nil {
		t.Fatal(err)
	}
	f.SetNetworkDenied(t, true)
	if _, err := f.KEK.UnwrapKey(ctx, kid, wrapped); !errors.Is(err, kek.ErrNetworkDenied) {
		t.Errorf("unwrap with the network denied = %v, want ErrNetworkDenied", err)
	}
	f.SetNetworkDenied(t, false)
	if back, err := f.KEK.UnwrapKey(ctx, kid, wrapped); err != nil || !bytes.Equal(back, s) {
		t.Fatalf("unwrap with the network allowed again: %v", err)
	}
}
