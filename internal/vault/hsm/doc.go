// Package hsm is the vault's PKCS#11 backend: RSA-HSM, EC-HSM and oct-HSM keys generated
// inside a token (non-extractable, sensitive), every private-key operation (decrypt,
// unwrap, sign) run there, public-key operations (encrypt, wrap with RSA, verify) run in
// software from the public part the token gave at generation. The vault keeps, per key
// version, only the token object's CKA_ID; a purge destroys the object.
//
// The backend also seals the vault root key ("auto-unseal"): SealRootKey wraps it with an
// AES-256 key that never leaves the token (AES-GCM in the token), so the root-key file
// alone reveals nothing.
//
// It needs CGO (the PKCS#11 module is a C library loaded at run time). A binary built with
// CGO_ENABLED=0 has the same API, whose Open refuses with an error saying so.
package hsm

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Config names the PKCS#11 module, the token and the file holding the user PIN.
type Config struct {
	// Module is the path of the vendor's PKCS#11 library (for SoftHSM,
	// /usr/lib/softhsm/libsofthsm2.so).
	Module string
	// Token is the token's label.
	Token string
	// PinFile holds the user PIN (mode 0600 or stricter).
	PinFile string
}

// Enabled reports whether any HSM setting was given.
func (c Config) Enabled() bool { return c.Module != "" || c.Token != "" || c.PinFile != "" }

// ErrUnavailable is wrapped when the module, the token or the login fails.
var ErrUnavailable = errors.New("HSM unavailable")

// check refuses an incomplete configuration and reads the PIN.
func (c Config) pin() (string, error) {
	if c.Module == "" || c.Token == "" || c.PinFile == "" {
		return "", fmt.Errorf("the HSM needs --hsm-module, --hsm-token and --hsm-pin-file together (given: module %q, token %q, pin file %q)", c.Module, c.Token, c.PinFile)
	}
	st, err := os.Stat(c.PinFile)
	if err != nil {
		return "", fmt.Errorf("HSM PIN file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("HSM PIN file %s is readable by others (mode %o): chmod 600 it", c.PinFile, st.Mode().Perm())
	}
	raw, err := os.ReadFile(c.PinFile)
	if err != nil {
		return "", fmt.Errorf("HSM PIN file: %w", err)
	}
	pin := strings.TrimSpace(string(raw))
	if pin == "" {
		return "", fmt.Errorf("HSM PIN file %s is empty", c.PinFile)
	}
	return pin, nil
}

// ReadPIN reads the PIN file named by c (refusing a file others can read).
func ReadPIN(c Config) (string, error) { return c.pin() }
