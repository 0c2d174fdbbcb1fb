package servertest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binary builds cmd/coffer once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "coffer-bin-")
		if err != nil {
			buildErr = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		builtPath = filepath.Join(dir, "coffer")
		cmd := exec.Command("go", "build", "-o", builtPath, "./cmd/coffer")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{out: string(out), err: err}
		}
	})
	if buildErr != nil {
		t.Fatalf("build coffer: %v", buildErr)
	}
	return builtPath
}

var (
	buildOnce sync.Once
	builtPath string
	buildErr  error
)

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// Process is `coffer serve` running as a child process.
type Process struct {
	Cmd    *exec.Cmd
	URL    string
	Stdout *strings.Builder // everything printed on stdout so far (read after Wait)
	mu     sync.Mutex
	done   chan struct{}
}

// StartProcess runs `coffer serve args...` in dir with extra environment variables and
// waits until it prints the URL it serves on.
func StartProcess(t testing.TB, dir string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(Binary(t), append([]string{"serve"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = io.Discard
	if os.Getenv("COFFER_TEST_LOG") != "" {
		cmd.Stderr = os.Stderr
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{Cmd: cmd, Stdout: &strings.Builder{}, done: make(chan struct{})}
	urlc := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.Stdout.WriteString(line + "\n")
			p.mu.Unlock()
			if rest, ok := strings.CutPrefix(line, "Coffer is serving on "); ok {
				urlc <- strings.Fields(rest)[0]
			}
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	select {
	case p.URL = <-urlc:
	case <-p.done:
		cmd.Wait()
		t.Fatalf("coffer serve exited before serving: %v\n%s", cmd.ProcessState, p.Output())
	case <-time.After(60 * time.Second):
		t.Fatal("coffer serve did not start within 60s")
	}
	return p
}

// Output is what the process printed on stdout so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Stdout.String()
}

// Wait waits for the process to exit and for its output to be read.
func (p *Process) Wait() error {
	<-p.done
	return p.Cmd.Wait()
}

// ClientTrusting returns an HTTP client that trusts the CA in caFile.
func ClientTrusting(t testing.TB, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return &http.Client{Transport: tr, Timeout: time.Minute}
}
