package seal_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/cofferhq/coffer/internal/seal"
)

func TestRecord(t *testing.T) {
	ctx := context.Background()
	k := newKeys()
	secret := []byte("sha256 state with a partial block: COFFER-MARKER")
	rec, err := seal.SealRecord(ctx, k, "upload u1", secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rec, []byte("COFFER-MARKER")) {
		t.Fatal("plaintext in the sealed record")
	}
	got, err := seal.OpenRecord(ctx, k, "upload u1", rec)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("OpenRecord = %q, %v", got, err)
	}
	if _, err := seal.OpenRecord(ctx, k, "upload u2", rec); !errors.Is(err, seal.ErrAuth) {
		t.Fatalf("another label: %v", err)
	}
	rec[len(rec)-1] ^= 1
	if _, err := seal.OpenRecord(ctx, k, "upload u1", rec); !errors.Is(err, seal.ErrAuth) {
		t.Fatalf("tampered: %v", err)
	}
	empty, err := seal.SealRecord(ctx, k, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := seal.OpenRecord(ctx, k, "", empty); err != nil || len(got) != 0 {
		t.Fatalf("empty record: %q, %v", got, err)
	}
}
