package main_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/servertest"
)

// TestServeWithNoFlags runs the README's first command the way a newcomer does: `coffer
// serve` in an empty directory with no flags. (The port comes from COFFER_LISTEN only so
// that parallel test runs do not collide on 5000; everything else is the embedded default.)
func TestServeWithNoFlags(t *testing.T) {
	dir := t.TempDir()
	servertest.Binary(t) // build first: the timing below is of the start alone
	start := time.Now()
	p := servertest.StartProcess(t, dir, []string{"COFFER_LISTEN=127.0.0.1:0"})
	data := filepath.Join(dir, "coffer-data")
	client := servertest.ClientTrusting(t, filepath.Join(data, "tls", "ca.pem"))
	waitReady(t, client, p.URL)
	t.Logf("first start: ready %v after launch (includes creating the CA and keys)", time.Since(start))
	if !strings.HasPrefix(p.URL, "https://") {
		t.Fatalf("default URL %s is not HTTPS", p.URL)
	}

	pwFile := filepath.Join(data, "initial-admin-password")
	st, err := os.Stat(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("initial-admin-password mode = %v, want 0600", st.Mode().Perm())
	}
	raw, _ := os.ReadFile(pwFile)
	password := strings.TrimSpace(string(raw))
	if password == "" || !strings.Contains(p.Output(), password) {
		t.Fatalf("the admin password was not printed on first start:\n%s", p.Output())
	}
	if got := tokenStatus(t, client, p.URL, "admin", password); got != http.StatusOK {
		t.Fatalf("admin token: status %d", got)
	}
	if got := tokenStatus(t, client, p.URL, "admin", password+"x"); got != http.StatusUnauthorized {
		t.Fatalf("wrong password: status %d, want 401", got)
	}

	// SIGTERM: a clean exit.
	p.Cmd.Process.Signal(syscall.SIGTERM)
	if err := p.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}

	// Restart on the same directory: state kept, password not printed again.
	start = time.Now()
	p2 := servertest.StartProcess(t, dir, []string{"COFFER_LISTEN=127.0.0.1:0"})
	waitReady(t, client, p2.URL)
	t.Logf("restart: ready %v after launch", time.Since(start))
	if strings.Contains(p2.Output(), password) {
		t.Error("the admin password was printed again on restart")
	}
	if got := tokenStatus(t, client, p2.URL, "admin", password); got != http.StatusOK {
		t.Fatalf("admin token after restart: status %d", got)
	}
	p2.Cmd.Process.Signal(syscall.SIGINT)
	if err := p2.Wait(); err != nil {
		t.Fatalf("exit after SIGINT: %v", err)
	}
}

func waitReady(t *testing.T, c *http.Client, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 within 30s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tokenStatus(t *testing.T, c *http.Client, base, user, password string) int {
	t.Helper()
	q := url.Values{"service": {"coffer-registry"}, "scope": {"repository:hello:pull"}}
	req, _ := http.NewRequest(http.MethodGet, base+"/oauth2/token?"+q.Encode(), nil)
	req.SetBasicAuth(user, password)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
