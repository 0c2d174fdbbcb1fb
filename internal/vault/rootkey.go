package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cofferhq/coffer/internal/durable"
)

// RootKeyEnv is the environment variable that carries the vault root key (base64). It wins
// over the root key file.
const RootKeyEnv = "COFFER_VAULT_ROOT_KEY"

// LoadRootKey returns the vault root key: from the environment value env (base64 of 32
// bytes) if it is not empty, else from file, which is created (mode 0600, 32 random bytes,
// base64) on first start. A file with looser permissions is refused.
func LoadRootKey(file, env string) ([]byte, string, error) {
	return LoadRootKeyWith(context.Background(), file, env, nil, false)
}

// RootKeySealer seals the vault root key with a key that never leaves an HSM (package
// vault/hsm's Backend).
type RootKeySealer interface {
	SealRootKey(ctx context.Context, root []byte) ([]byte, error)
	UnsealRootKey(ctx context.Context, sealed []byte) ([]byte, error)
	Platform() string
}

// sealedRootKeyPrefix starts a root-key file whose key is sealed by an HSM.
const sealedRootKeyPrefix = "coffer-vault-root-key-hsm-v1:"

// LoadRootKeyWith is LoadRootKey with an HSM ("auto-unseal"): a root-key file sealed by
// the token is unsealed with it; with seal set, a new root key is written sealed, and a
// plain one already there is sealed in place. A sealed file without an HSM, or with a
// token that cannot unseal it, is refused with the reason.
func LoadRootKeyWith(ctx context.Context, file, env string, hsm RootKeySealer, sealNew bool) ([]byte, string, error) {
	if sealNew && hsm == nil {
		return nil, "", errors.New("sealing the vault root key by an HSM needs the HSM: give --hsm-module, --hsm-token and --hsm-pin-file")
	}
	if env = strings.TrimSpace(env); env != "" {
		if sealNew {
			return nil, "", fmt.Errorf("%s and sealing the root key by the HSM exclude each other: unset %s (its key can be written to the root-key file, which is then sealed)", RootKeyEnv, RootKeyEnv)
		}
		k, err := base64.StdEncoding.DecodeString(env)
		if err != nil {
			return nil, "", fmt.Errorf("%s is not base64: %w", RootKeyEnv, err)
		}
		if len(k) != 32 {
			return nil, "", fmt.Errorf("%s must hold 32 bytes (base64 of 32 random bytes), it holds %d", RootKeyEnv, len(k))
		}
		return k, "environment " + RootKeyEnv, nil
	}
	raw, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		k := make([]byte, 32)
		rand.Read(k)
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			return nil, "", fmt.Errorf("create vault root key directory: %w", err)
		}
		if err := writeRootKey(ctx, file, k, hsm, sealNew); err != nil {
			return nil, "", err
		}
		return k, describeRootKey(file, hsm, sealNew), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read vault root key %s: %w", file, err)
	}
	if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, "", fmt.Errorf("vault root key %s is readable by others (mode %o): chmod 600 it", file, st.Mode().Perm())
	}
	text := strings.TrimSpace(string(raw))
	if rest, ok := strings.CutPrefix(text, sealedRootKeyPrefix); ok {
		if hsm == nil {
			return nil, "", fmt.Errorf("vault root key %s is sealed by an HSM: start coffer serve with --hsm-module, --hsm-token and --hsm-pin-file naming the token that sealed it (docs/hsm.md)", file)
		}
		sealed, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return nil, "", fmt.Errorf("vault root key %s: the sealed key is not base64: %w", file, err)
		}
		k, err := hsm.UnsealRootKey(ctx, sealed)
		if err != nil {
			return nil, "", fmt.Errorf("vault root key %s: %w", file, err)
		}
		if len(k) != 32 {
			return nil, "", fmt.Errorf("vault root key %s: the unsealed key has %d bytes, not 32", file, len(k))
		}
		return k, describeRootKey(file, hsm, true), nil
	}
	k, err := base64.StdEncoding.DecodeString(text)
	if err != nil || len(k) != 32 {
		return nil, "", fmt.Errorf("vault root key %s must hold base64 of 32 bytes", file)
	}
	if sealNew {
		// Seal the plain key in place: from now on the file alone reveals nothing (older
		// copies of it, in backups, still do).
		if err := writeRootKey(ctx, file, k, hsm, true); err != nil {
			return nil, "", err
		}
	}
	return k, describeRootKey(file, hsm, sealNew), nil
}

func describeRootKey(file string, hsm RootKeySealer, sealed bool) string {
	if sealed {
		return file + " (sealed by HSM " + hsm.Platform() + ")"
	}
	return file
}

func writeRootKey(ctx context.Context, file string, k []byte, hsm RootKeySealer, sealNew bool) error {
	text := base64.StdEncoding.EncodeToString(k)
	if sealNew {
		sealed, err := hsm.SealRootKey(ctx, k)
		if err != nil {
			return fmt.Errorf("seal the vault root key with the HSM: %w", err)
		}
		text = sealedRootKeyPrefix + base64.StdEncoding.EncodeToString(sealed)
	}
	if err := durable.WriteFile(file, []byte(text+"\n"), 0o600); err != nil {
		return fmt.Errorf("write vault root key %s: %w", file, err)
	}
	return nil
}

// sealer encrypts key material at rest and backups under keys derived from the root key.
type sealer struct {
	material cipher.AEAD
	backup   cipher.AEAD
}

func newSealer(root []byte) (*sealer, error) {
	derive := func(label string) (cipher.AEAD, error) {
		k, err := hkdf.Key(sha256.New, root, nil, label, 32)
		if err != nil {
			return nil, err
		}
		b, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	}
	m, err := derive("coffer vault key material v1")
	if err != nil {
		return nil, fmt.Errorf("derive vault keys: %w", err)
	}
	b, err := derive("coffer vault key backup v1")
	if err != nil {
		return nil, fmt.Errorf("derive vault keys: %w", err)
	}
	return &sealer{material: m, backup: b}, nil
}

func seal(a cipher.AEAD, plain, aad []byte) []byte {
	nonce := make([]byte, a.NonceSize())
	rand.Read(nonce)
	return a.Seal(nonce, nonce, plain, aad)
}

func open(a cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < a.NonceSize()+a.Overhead() {
		return nil, errors.New("sealed data is too short")
	}
	return a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], aad)
}

func materialAAD(vault, name, version string) []byte {
	return []byte("coffer-vault-material\x00" + vault + "\x00" + name + "\x00" + version)
}
