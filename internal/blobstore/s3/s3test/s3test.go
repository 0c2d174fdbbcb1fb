// Package s3test starts a real S3 server for tests: versitygw, an S3 gateway over a POSIX
// directory, on a free port of 127.0.0.1 with a temporary directory, stopped when the test
// ends. No fake: requests go over HTTP to the gateway, which stores the objects as files.
//
// The binary is $COFFER_VERSITYGW, else ${COFFER_TOOLS:-$HOME/.cache/coffer-tools}/bin/versitygw
// (installed by scripts/install-versitygw), else versitygw on PATH. A missing binary fails
// the test with the command that installs it; it is never a silent skip.
package s3test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Credentials of the gateway's root account.
const (
	AccessKey = "coffer-test-access"
	SecretKey = "coffer-test-secret-key-0123456789"
)

// Server is a running gateway.
type Server struct {
	// Endpoint is its URL (http://127.0.0.1:PORT).
	Endpoint string
	// Dir is the directory behind it: bucket B's objects are the files under Dir/B.
	Dir string
}

// Binary finds the versitygw binary, or says how to install it.
func Binary() (string, error) {
	if p := os.Getenv("COFFER_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("COFFER_VERSITYGW=%s: %w", p, err)
		}
		return p, nil
	}
	tools := os.Getenv("COFFER_TOOLS")
	if tools == "" {
		home, _ := os.UserHomeDir()
		tools = filepath.Join(home, ".cache", "coffer-tools")
	}
	if p := filepath.Join(tools, "bin", "versitygw"); fileExists(p) {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", errors.New("versitygw (a real S3 server for the S3 blob store's tests) is not installed: run scripts/install-versitygw " +
		"(it builds github.com/versity/versitygw/cmd/versitygw@v1.8.0 into ${COFFER_TOOLS:-$HOME/.cache/coffer-tools}/bin), or set COFFER_VERSITYGW to the binary")
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// Start starts a gateway for the test, with buckets already made for each name given.
func Start(t testing.TB, buckets ...string) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, b := range buckets {
		// A bucket of the posix backend is a top-level directory.
		if err := os.Mkdir(filepath.Join(dir, b), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var lastErr error
	for range 3 { // the free port may be taken between choosing it and the gateway binding it
		s, err := start(t, bin, dir)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("start versitygw: %v", lastErr)
	return nil
}

func start(t testing.TB, bin, dir string) (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	var logs strings.Builder
	cmd := exec.Command(bin, "--port", addr, "--access", AccessKey, "--secret", SecretKey, "posix", dir)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}
	s := &Server{Endpoint: "http://" + addr, Dir: dir}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close() // any answer (403 without a signature) means it is serving
			t.Cleanup(stop)
			return s, nil
		}
		select {
		case werr := <-exited:
			return nil, fmt.Errorf("versitygw exited (%v): %s", werr, logs.String())
		case <-ctx.Done():
			stop()
			return nil, fmt.Errorf("versitygw did not answer on %s within 20s: %s", addr, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
