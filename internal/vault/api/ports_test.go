package api_test

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// TestVaultPortThatCannotServeIsRefused: the management API refuses (400 BadParameter,
// with the reason) a vault port the server cannot serve on: one in use, the main
// listener's, a privileged one; and a vault updated onto one keeps its port.
func TestVaultPortThatCannotServeIsRefused(t *testing.T) {
	e := vaulttest.Start(t, nil)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	inUse := taken.Addr().(*net.TCPAddr).Port
	_, mainPort, _ := net.SplitHostPort(e.Inst.Addr)
	main, _ := strconv.Atoi(mainPort)
	for _, c := range []struct {
		port int
		why  string
	}{{inUse, "in use"}, {main, "main port"}, {443, "privileged"}, {80, "privileged"}} {
		err := e.Do("POST", "/coffer/v1/vaults", map[string]any{"name": "ported", "port": c.port}, nil)
		var ae *vaulttest.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Body, "BadParameter") || !strings.Contains(ae.Body, c.why) {
			t.Errorf("vault on port %d (%s): %v, want 400 BadParameter saying %q", c.port, c.why, err, c.why)
		}
	}
	if err := e.Do("GET", "/coffer/v1/vaults/ported", nil, nil); err == nil {
		t.Fatal("a refused vault exists")
	}
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	v := e.CreateVault(t, "ported", map[string]any{"port": port})
	err = e.Do("PATCH", "/coffer/v1/vaults/ported", map[string]any{"port": inUse}, nil)
	var ae *vaulttest.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Body, "in use") {
		t.Fatalf("move onto a port in use: %v", err)
	}
	// The vault still serves where it said, and the check left its port open once.
	resp, err := e.HTTP.Get(v.VaultURI + "/keys?api-version=7.4")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the vault's port answers %d, want the bearer challenge", resp.StatusCode)
	}
	e.MustDo(t, "PATCH", "/coffer/v1/vaults/ported", map[string]any{"port": port, "softDeleteRetentionInDays": 30}, nil)
}
