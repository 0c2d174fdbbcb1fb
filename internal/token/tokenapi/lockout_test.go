package tokenapi_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"testing"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/token"
)

// from returns a copy of inst whose client connects from the loopback address ip.
func from(t *testing.T, inst *servertest.Instance, ip string) *servertest.Instance {
	t.Helper()
	tr := inst.Client.Transport.(*http.Transport).Clone()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	c := *inst
	c.Client = &http.Client{Transport: tr}
	return &c
}

// TestStrangerCannotLockOutAUser: names are not secret, so failures from other addresses
// must never stop the right password: guessing is slowed per address (and per name and
// address), and a correct secret always gets its token.
func TestStrangerCannotLockOutAUser(t *testing.T) {
	inst := servertest.Start(t, func(c *config.Server) { c.LoginFailureLimit = 3 })
	q := url.Values{"service": {token.RegistryService}}
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		attacker := from(t, inst, ip)
		for i := range 6 {
			resp, _ := getToken(t, attacker, "admin", "guess-"+string(rune('a'+i)), q)
			want := http.StatusUnauthorized
			if i >= 3 {
				want = http.StatusTooManyRequests
			}
			if resp.StatusCode != want {
				t.Fatalf("%s guess %d: %d, want %d", ip, i+1, resp.StatusCode, want)
			}
		}
		// The guessing address stays throttled, even with the right password.
		if resp, _ := getToken(t, attacker, "admin", inst.AdminPassword, q); resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("%s, right password after its own guesses: %d, want 429", ip, resp.StatusCode)
		}
	}
	user := from(t, inst, "127.0.0.1")
	if resp, ans := getToken(t, user, "admin", inst.AdminPassword, q); resp.StatusCode != http.StatusOK || ans.Token == "" {
		t.Fatalf("right password from 127.0.0.1 after strangers' failures: %d %+v", resp.StatusCode, ans)
	}
	// A wrong password from a fresh address is still a plain failure, never a success.
	if resp, _ := getToken(t, from(t, inst, "127.0.0.4"), "admin", "another-guess", q); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password from a fresh address: %d, want 401", resp.StatusCode)
	}
	// Client credentials likewise.
	resp, _ := postForm(t, from(t, inst, "127.0.0.5"), "/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"admin"},
		"password": {inst.AdminPassword}, "service": {token.AudienceManagement}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("password grant from a fresh address: %d", resp.StatusCode)
	}
}
