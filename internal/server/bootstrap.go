package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cofferhq/coffer/internal/durable"
	"github.com/cofferhq/coffer/internal/identity"
)

// bootstrapAdmin creates the administrator on first start: its password is written to
// <data-dir>/initial-admin-password (0600) before the user exists, then printed once. It
// returns the new administrator, or nil when there already is one.
func (s *Server) bootstrapAdmin(ctx context.Context, svc *identity.Service) (*identity.Principal, error) {
	need, err := svc.NeedsBootstrap(ctx)
	if err != nil || !need {
		return nil, err
	}
	buf := make([]byte, 18)
	if _, err := rand.Read(buf); err != nil {
		return nil, err
	}
	password := base64.RawURLEncoding.EncodeToString(buf)
	path := filepath.Join(s.cfg.DataDir, "initial-admin-password")
	if err := durable.WriteFile(path, []byte(password+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	admin, err := svc.BootstrapAdmin(ctx, password)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(s.out, "initial admin password: %s\n(also in %s; change it with 'coffer user passwd admin')\n", password, path)
	s.log.Info("created the administrator", "user", admin.Name, "password_file", path)
	return &admin, nil
}

// writeSecretCopy writes v to path (0600) unless it holds v already.
func writeSecretCopy(path, v string) error {
	if raw, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(raw)) == v {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return durable.WriteFile(path, []byte(v+"\n"), 0o600)
}
