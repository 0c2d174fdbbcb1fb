package tokenapi_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/servertest"
)

// TestSkopeoLogin runs a real registry client's login (containers/image: ping /v2/, follow
// the Bearer challenge to /oauth2/token with HTTP Basic) against Coffer.
func TestSkopeoLogin(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("skopeo is not installed (scripts/test installs it; CI requires it)")
		}
		t.Fatal("skopeo is required in CI: scripts/test installs it with apt-get")
	}
	inst := servertest.Start(t, nil)
	certDir := t.TempDir()
	ca, err := os.ReadFile(inst.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certDir, "ca.crt"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	login := func(password string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, skopeo, "login", "--cert-dir", certDir, "--authfile", filepath.Join(t.TempDir(), "auth.json"),
			"-u", "admin", "--password-stdin", inst.Addr)
		cmd.Stdin = strings.NewReader(password + "\n")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := login(inst.AdminPassword); err != nil {
		t.Fatalf("skopeo login as admin: %v\n%s", err, out)
	}
	if out, err := login("wrong-password"); err == nil {
		t.Fatalf("skopeo login with a wrong password succeeded:\n%s", out)
	}
}
