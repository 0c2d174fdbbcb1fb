package server

import (
	"context"
	"fmt"
	"os"

	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/hsm"
)

// openHSM opens the PKCS#11 token of --hsm-module/--hsm-token/--hsm-pin-file, or returns
// nil when none is configured. A server told to use a token does not start without it.
func (s *Server) openHSM(ctx context.Context) (*hsm.Backend, error) {
	v := s.cfg.Vault
	c := hsm.Config{Module: v.HSMModule, Token: v.HSMToken, PinFile: v.HSMPinFile}
	if !c.Enabled() {
		if v.HSMAllVaults || v.RootKeyHSM {
			return nil, fmt.Errorf("--hsm-all-vaults and --vault-root-key-hsm need an HSM: give --hsm-module, --hsm-token and --hsm-pin-file")
		}
		return nil, nil
	}
	b, err := hsm.Open(ctx, c, s.log.With("part", "hsm"))
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, b.Close)
	return b, nil
}

// loadRootKey loads the vault root key, unsealed by (or sealed with) the token when one is
// open.
func loadRootKey(ctx context.Context, file string, b *hsm.Backend, seal bool) ([]byte, string, error) {
	if b == nil {
		return vault.LoadRootKeyWith(ctx, file, os.Getenv(vault.RootKeyEnv), nil, false)
	}
	return vault.LoadRootKeyWith(ctx, file, os.Getenv(vault.RootKeyEnv), b, seal)
}

// vaultHSM is b as the vault's HSM (nil, not a nil *Backend, when there is none).
func vaultHSM(b *hsm.Backend) vault.HSM {
	if b == nil {
		return nil
	}
	return b
}
