package vault

import (
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
	if env = strings.TrimSpace(env); env != "" {
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
		if err := durable.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
			return nil, "", fmt.Errorf("write vault root key %s: %w", file, err)
		}
		return k, file, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read vault root key %s: %w", file, err)
	}
	if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, "", fmt.Errorf("vault root key %s is readable by others (mode %o): chmod 600 it", file, st.Mode().Perm())
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(k) != 32 {
		return nil, "", fmt.Errorf("vault root key %s must hold base64 of 32 bytes", file)
	}
	return k, file, nil
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
