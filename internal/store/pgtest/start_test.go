package pgtest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/server"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/vault"
)

// sharedRootKey writes a vault root key file that every replica of a test is given.
func sharedRootKey(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "vault-root.key")
	root, _, err := vault.LoadRootKeyWith(t.Context(), file, "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	clear(root)
	return file
}

// dockerToken fetches a registry token from inst's token endpoint.
func dockerToken(t *testing.T, inst *servertest.Instance, password string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", inst.URL+"/oauth2/token?service=coffer-registry&scope=registry:catalog:*", nil)
	req.SetBasicAuth("admin", password)
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Token == "" {
		t.Fatalf("token from %s: %d %v", inst.URL, resp.StatusCode, err)
	}
	return body.Token
}

// TestReplicasStartTogether: two servers started at the same moment on a fresh
// PostgreSQL database both come up (one initialises, the other waits for it and finds
// everything made): one administrator, one signing key set, one identity-header secret.
func TestReplicasStartTogether(t *testing.T) {
	pg := pgtest.Start(t)
	url := pg.URL(pg.NewDatabase(t))
	rootKey := sharedRootKey(t)
	insts := make([]*servertest.Instance, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := config.Defaults()
			cfg.DataDir = t.TempDir()
			cfg.Listen = "127.0.0.1:0"
			cfg.Metadata = url
			cfg.Vault.RootKeyFile = rootKey
			insts[i], errs[i] = servertest.StartConfig(cfg)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d did not start beside the other: %v", i, err)
		}
		t.Cleanup(insts[i].Stop)
	}
	a, b := insts[0], insts[1]
	password := a.AdminPassword + b.AdminPassword
	if (a.AdminPassword == "") == (b.AdminPassword == "") {
		t.Fatalf("want exactly one replica to create the administrator: %q and %q", a.AdminPassword, b.AdminPassword)
	}

	// A token one replica issued is accepted by the other (one signing key set).
	for _, pair := range [][2]*servertest.Instance{{a, b}, {b, a}} {
		tok := dockerToken(t, pair[0], password)
		req, _ := http.NewRequest("GET", pair[1].URL+"/v2/_catalog", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := pair[1].Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("a token of %s refused by %s: %d %s", pair[0].URL, pair[1].URL, resp.StatusCode, body)
		}
	}
	// One identity-header secret, copied to each replica's data directory.
	ha := readFile(t, filepath.Join(a.DataDir, "keys", "identity-header"))
	hb := readFile(t, filepath.Join(b.DataDir, "keys", "identity-header"))
	if ha == "" || ha != hb {
		t.Fatalf("the replicas' identity-header secrets differ: %q, %q", ha, hb)
	}
}

// TestMigrate: coffer migrate's function applies every part's schema to a fresh database
// once, a server started afterwards migrates nothing, and a second run applies nothing.
func TestMigrate(t *testing.T) {
	pg := pgtest.Start(t)
	url := pg.URL(pg.NewDatabase(t))
	rootKey := sharedRootKey(t)
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Metadata = url
	cfg.Vault.RootKeyFile = rootKey
	var out strings.Builder
	rep, err := server.Migrate(t.Context(), cfg, nil, &out)
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]int{}
	for _, c := range rep.Components {
		if c.Before != 0 {
			t.Fatalf("a fresh database had %s at step %d", c.Component, c.Before)
		}
		parts[c.Component] = c.After
	}
	for _, want := range []string{"registry", "token", "identity", "vault", "trust", "audit"} {
		if parts[want] == 0 {
			t.Fatalf("migrate left %s out: %+v", want, rep.Components)
		}
	}
	if rep.Applied == 0 || !strings.HasPrefix(rep.Metadata, "postgresql 127.0.0.1:") || strings.Contains(rep.Metadata, "postgres@") {
		t.Fatalf("report %+v", rep)
	}
	if !strings.Contains(out.String(), "initial admin password") {
		t.Fatalf("the administrator's password was not shown: %q", out.String())
	}

	again, err := server.Migrate(t.Context(), cfg, nil, io.Discard)
	if err != nil || again.Applied != 0 {
		t.Fatalf("a second run applied %d (%v)", again.Applied, err)
	}
	// A replica started afterwards serves on the migrated database.
	inst := servertest.Start(t, func(c *config.Server) { c.Metadata = url; c.Vault.RootKeyFile = rootKey })
	resp, err := inst.Client.Get(inst.URL + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz after migrate: %v", err)
	}
	resp.Body.Close()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
