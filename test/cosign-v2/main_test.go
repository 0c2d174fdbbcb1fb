package cosignv2

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// coffer is the `coffer serve` process the tests run against.
type coffer struct {
	bin     string // the coffer binary, also the CLI
	url     string // https://127.0.0.1:PORT
	host    string // 127.0.0.1:PORT, the registry host in image references
	caFile  string // the server's local CA (PEM)
	dataDir string
	env     []string // what the CLI needs to act as the administrator
	cmd     *exec.Cmd
	log     *os.File
	tls     *http.Transport
}

var srv *coffer

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "coffer-cosign-v2-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	s, err := startCoffer(dir)
	if s != nil {
		defer s.stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv = s
	return m.Run()
}

// startCoffer builds coffer from the repository root and runs `coffer serve` on a free
// port with a data directory under dir.
func startCoffer(dir string) (*coffer, error) {
	s := &coffer{bin: filepath.Join(dir, "coffer"), dataDir: filepath.Join(dir, "data")}
	build := exec.Command("go", "build", "-o", s.bin, "./cmd/coffer")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build coffer: %v\n%s", err, out)
	}
	log, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		return nil, err
	}
	s.log = log
	s.cmd = exec.Command(s.bin, "serve", "--data-dir", s.dataDir, "--listen", "127.0.0.1:0")
	s.cmd.Env = append(os.Environ(), "COFFER_VAULT_ROOT_KEY=")
	s.cmd.Stderr = log
	if os.Getenv("COFFER_TEST_LOG") != "" {
		s.cmd.Stderr = io.MultiWriter(log, os.Stderr)
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "Coffer is serving on "); ok {
				urlc <- strings.Fields(rest)[0]
			}
		}
		close(urlc)
	}()
	select {
	case u, ok := <-urlc:
		if !ok {
			return s, errors.New("coffer serve exited before serving; see its log")
		}
		s.url = u
	case <-time.After(2 * time.Minute):
		return s, errors.New("coffer serve did not start within 2 minutes")
	}
	pu, err := url.Parse(s.url)
	if err != nil {
		return s, err
	}
	s.host = pu.Host
	s.caFile = filepath.Join(s.dataDir, "tls", "ca.pem")
	pem, err := os.ReadFile(s.caFile)
	if err != nil {
		return s, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return s, fmt.Errorf("%s holds no certificate", s.caFile)
	}
	s.tls = http.DefaultTransport.(*http.Transport).Clone()
	s.tls.TLSClientConfig = &tls.Config{RootCAs: pool}
	pw, err := os.ReadFile(filepath.Join(s.dataDir, "initial-admin-password"))
	if err != nil {
		return s, err
	}
	s.env = []string{"COFFER_CONFIG_DIR=" + filepath.Join(dir, "cli"), "COFFER_SERVER=" + s.url,
		"COFFER_CA_FILE=" + s.caFile, "COFFER_USERNAME=admin", "COFFER_PASSWORD=" + strings.TrimSpace(string(pw))}
	return s, nil
}

func (s *coffer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			s.cmd.Process.Kill()
			<-done
		}
	}
	if s.log != nil {
		s.log.Close()
	}
}

// cli runs the coffer CLI as the administrator and returns its standard output.
func cli(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := cliErr(stdin, args...)
	if err != nil {
		t.Fatalf("coffer %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func cliErr(stdin string, args ...string) (string, error) {
	cmd := exec.Command(srv.bin, args...)
	cmd.Env = append(os.Environ(), srv.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// user creates a user with role at scope through the CLI and returns its password.
func user(t *testing.T, name, role, scope string) string {
	t.Helper()
	pw := name + "-long-password-1"
	cli(t, pw+"\n", "user", "create", name, "--password-stdin")
	cli(t, "", "role", "assignment", "create", "--role", role, "--assignee", name, "--scope", scope)
	return pw
}
