// Package hsmtest gives tests a SoftHSM2 token of their own: a token directory and
// configuration in a temp dir, initialised with softhsm2-util, and a PIN file.
package hsmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cofferhq/coffer/internal/vault/hsm"
)

// Module is where Debian's softhsm2 package puts its PKCS#11 module.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// Token is a SoftHSM token initialised for one test.
type Token struct {
	hsm.Config
	// Dir is the token directory (remove its contents to "unplug" the token).
	Dir string
	// Conf is the SOFTHSM2_CONF file.
	Conf string
}

// New initialises a token labelled label in a temp dir and points SOFTHSM2_CONF at it for
// the rest of the test (so the test cannot run in parallel with another). It skips the test
// when SoftHSM2 is not installed and COFFER_REQUIRE_HSM is not set.
func New(t testing.TB, label string) Token {
	t.Helper()
	util, err := exec.LookPath("softhsm2-util")
	if _, serr := os.Stat(Module); err != nil || serr != nil {
		if os.Getenv("COFFER_REQUIRE_HSM") != "" {
			t.Fatalf("SoftHSM2 is not installed (softhsm2-util: %v, module %s: %v): apt-get install softhsm2 opensc", err, Module, serr)
		}
		t.Skip("SoftHSM2 is not installed (apt-get install softhsm2)")
	}
	root := t.TempDir()
	tok := Token{Dir: filepath.Join(root, "tokens"), Conf: filepath.Join(root, "softhsm2.conf")}
	if err := os.MkdirAll(tok.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := "directories.tokendir = " + tok.Dir + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(tok.Conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", tok.Conf)
	const pin = "4321-coffer"
	cmd := exec.Command(util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "8765-coffer")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+tok.Conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	pinFile := filepath.Join(root, "pin")
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok.Config = hsm.Config{Module: Module, Token: label, PinFile: pinFile}
	return tok
}

// Unplug removes the token's storage, as if the token were taken away.
func (tok Token) Unplug(t testing.TB) {
	t.Helper()
	entries, err := os.ReadDir(tok.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(tok.Dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}
