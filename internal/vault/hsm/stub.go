//go:build !cgo

package hsm

import (
	"context"
	"errors"
	"log/slog"

	"github.com/cofferhq/coffer/internal/vault/keys"
)

var errNoCGO = errors.New("this coffer binary was built without CGO (CGO_ENABLED=0), so it cannot load a PKCS#11 module: build it with CGO_ENABLED=1 to use --hsm-module")

// Backend is a PKCS#11 token; in a binary without CGO it cannot be opened.
type Backend struct{}

// Open refuses: PKCS#11 needs CGO.
func Open(ctx context.Context, c Config, log *slog.Logger) (*Backend, error) {
	return nil, errNoCGO
}

// Close does nothing.
func (b *Backend) Close() error { return nil }

// Platform describes the token.
func (b *Backend) Platform() string { return "" }

// Generate refuses.
func (b *Backend) Generate(ctx context.Context, label string, spec keys.CreateSpec) (keys.JWK, string, error) {
	return keys.JWK{}, "", errNoCGO
}

// Open refuses.
func (b *Backend) OpenKey(ctx context.Context, ref string, pub keys.JWK) (keys.Operator, error) {
	return nil, errNoCGO
}

// Destroy refuses.
func (b *Backend) Destroy(ctx context.Context, ref string) error { return errNoCGO }

// Exists refuses.
func (b *Backend) Exists(ctx context.Context, ref string) (bool, error) { return false, errNoCGO }

// SealRootKey refuses.
func (b *Backend) SealRootKey(ctx context.Context, root []byte) ([]byte, error) { return nil, errNoCGO }

// UnsealRootKey refuses.
func (b *Backend) UnsealRootKey(ctx context.Context, sealed []byte) ([]byte, error) {
	return nil, errNoCGO
}
