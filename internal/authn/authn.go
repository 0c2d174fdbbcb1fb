// Package authn turns an HTTP request's credentials into a verified principal. Each API
// writes its own challenge (the registry's Bearer realm, the vault's authorization/resource
// challenge) and error shape; this package only verifies.
package authn

import (
	"context"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/token"
)

type ctxKey struct{}

// Caller is a verified caller.
type Caller struct {
	Principal identity.Principal
	// Claims of the bearer token, when the caller presented one.
	Claims *token.Claims
}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// CallerFrom returns the caller carried by ctx.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(ctxKey{}).(Caller)
	return c, ok
}

// Verifier verifies a bearer token issued for audience and returns its claims. The token
// service implements it; every API uses it.
type Verifier interface {
	Verify(ctx context.Context, raw string, audience string) (*token.Claims, error)
}
