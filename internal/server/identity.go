package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/durable"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/token"
	"github.com/cofferhq/coffer/internal/token/tokenapi"
)

// identityPart holds what the server keeps of the identity and token parts.
type identityPart struct {
	// verifier verifies every bearer token (all APIs use it).
	verifier authn.Verifier
	// tenantID is this server's tenant (the Entra-ID-shaped authority's tenant).
	tenantID string
	// bootstrapAdmin is set on first start: the access part makes it Owner at "/".
	bootstrapAdmin *identity.Principal
	// svc owns principals and credentials.
	svc *identity.Service
	// tokens issues and verifies tokens (it is also verifier).
	tokens *token.Service
}

// mountIdentity wires identities, the token service and their routes.
func (s *Server) mountIdentity(ctx context.Context) error {
	svc, err := identity.Open(ctx, s.db, identity.Options{})
	if err != nil {
		return err
	}
	s.identity.svc = svc
	s.identity.tenantID = svc.TenantID()
	if err := s.bootstrapAdmin(ctx); err != nil {
		return err
	}

	keysDir := filepath.Join(s.cfg.DataDir, "keys")
	ks, err := token.OpenKeySet(filepath.Join(keysDir, "token-signing"), s.cfg.TokenKeyRotation,
		s.cfg.TokenTTL+token.DefaultLeeway+time.Minute, nil)
	if err != nil {
		return err
	}
	tokens := token.NewService(ks, token.Options{TenantID: svc.TenantID(), TTL: s.cfg.TokenTTL})
	s.identity.tokens = tokens
	s.identity.verifier = tokens
	if s.mgmt, err = mgmt.NewRouter(s.mux, tokens); err != nil {
		return err
	}

	header, err := ensureSecretFile(filepath.Join(keysDir, "identity-header"))
	if err != nil {
		return fmt.Errorf("managed identity header secret: %w", err)
	}
	granter := token.NewGranter(token.GranterOptions{
		Authorizer:    lazyAuthorizer{s},
		AnonymousPull: s.cfg.Registry.AnonymousPull,
		VaultResource: token.VaultResource(s.cfg.Vault.Domain),
		Log:           s.log,
	})
	tokenapi.New(tokenapi.Config{
		Identity:       svc,
		Tokens:         tokens,
		Granter:        granter,
		IdentityHeader: header,
		Limiter:        identity.NewLoginLimiter(s.cfg.LoginFailureLimit, time.Minute, nil),
		Log:            s.log,
	}).Register(s.mux)
	return nil
}

// bootstrapAdmin creates the administrator on first start: its password is written to
// <data-dir>/initial-admin-password (0600) before the user exists, then printed once.
func (s *Server) bootstrapAdmin(ctx context.Context) error {
	svc := s.identity.svc
	need, err := svc.NeedsBootstrap(ctx)
	if err != nil || !need {
		return err
	}
	buf := make([]byte, 18)
	if _, err := rand.Read(buf); err != nil {
		return err
	}
	password := base64.RawURLEncoding.EncodeToString(buf)
	path := filepath.Join(s.cfg.DataDir, "initial-admin-password")
	if err := durable.WriteFile(path, []byte(password+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	admin, err := svc.BootstrapAdmin(ctx, password)
	if err != nil {
		return err
	}
	s.identity.bootstrapAdmin = &admin
	fmt.Fprintf(s.out, "initial admin password: %s\n(also in %s; change it with 'coffer user passwd admin')\n", password, path)
	s.log.Info("created the administrator", "user", admin.Name, "password_file", path)
	return nil
}

// ensureSecretFile returns the secret kept in path, creating a random one (0600) if needed.
func ensureSecretFile(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		if v := strings.TrimSpace(string(raw)); v != "" {
			return v, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	v := base64.RawURLEncoding.EncodeToString(buf)
	if err := durable.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
		return "", err
	}
	return v, nil
}

// TokenVerifier is the server's token verifier (tests and embedders verify tokens with it).
func (s *Server) TokenVerifier() authn.Verifier { return s.identity.verifier }

// Identities is the server's identity service.
func (s *Server) Identities() *identity.Service { return s.identity.svc }
