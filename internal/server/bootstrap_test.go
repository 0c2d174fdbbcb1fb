package server_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/server"
)

func TestFirstStartPrintsAdminPasswordOnce(t *testing.T) {
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func() string {
		var out bytes.Buffer
		srv, err := server.New(context.Background(), cfg, log, &out)
		if err != nil {
			t.Fatal(err)
		}
		srv.Close()
		return out.String()
	}
	first := start()
	pw, err := os.ReadFile(filepath.Join(cfg.DataDir, "initial-admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(first, "initial admin password: "+strings.TrimSpace(string(pw))) {
		t.Fatalf("first start printed %q, want the password from the file", first)
	}
	if second := start(); strings.Contains(second, "initial admin password") {
		t.Fatalf("restart printed the admin password again: %q", second)
	}
	if again, _ := os.ReadFile(filepath.Join(cfg.DataDir, "initial-admin-password")); !bytes.Equal(again, pw) {
		t.Fatal("restart rewrote initial-admin-password")
	}
}
