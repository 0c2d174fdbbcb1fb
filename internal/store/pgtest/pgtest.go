// Package pgtest starts a real PostgreSQL server for tests (Debian's postgresql package:
// initdb and pg_ctl on a temporary data directory and a free port on 127.0.0.1) and hands
// out fresh, empty databases on it as store.DB values. The server stops, and its files
// are removed, when the test that started it ends.
//
// A machine without PostgreSQL fails the test with the command that installs it; it never
// skips, so a metadata suite cannot pass in CI without having run on PostgreSQL.
package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// Server is a running PostgreSQL server owned by one test.
type Server struct {
	dir   string
	port  int
	cred  *syscall.Credential
	bin   string
	count atomic.Int64
	// stopped is set by Stop and cleared by Restart (one test goroutine drives both).
	stopped bool
	durable bool
}

// LaunchOptions are Launch's settings.
type LaunchOptions struct {
	// Durable runs the server with fsync on, as in production (a benchmark against
	// SQLite's synchronous=FULL); a test server runs with fsync off.
	Durable bool
}

// Start starts a PostgreSQL server for t (about 3 s) and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Launch(LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(); err != nil {
			t.Errorf("stop the test PostgreSQL server: %v", err)
		}
	})
	return s
}

// Launch starts a PostgreSQL server outside a test (the benchmark harness, bench/registry),
// as Start does: initdb and pg_ctl on a new temporary directory and a free port of
// 127.0.0.1. The caller must call Shutdown, also when what follows fails.
func Launch(o LaunchOptions) (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, durable: o.Durable}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: run it as the postgres user the package creates.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("PostgreSQL cannot run as root and there is no postgres user (apt-get install postgresql creates it): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir: its parents are private to this user, and the server may run as another.
	dir, err := os.MkdirTemp("", "coffer-pgtest-")
	if err != nil {
		return nil, err
	}
	s.dir = dir
	s.stopped = true // nothing to stop until the server runs
	if err := s.launch(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) launch() error {
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return err
		}
	}
	if out, err := s.run("initdb", "-D", s.data(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		var err error
		if s.port, err = freePort(); err != nil {
			return err
		}
		if lastErr = s.start(); lastErr == nil {
			return nil
		}
	}
	return lastErr
}

// Shutdown stops the server (unless Stop did) and removes its files.
func (s *Server) Shutdown() error {
	defer os.RemoveAll(s.dir)
	if s.stopped {
		return nil
	}
	if out, err := s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "-t", "30", "stop"); err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	s.stopped = true
	return nil
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

func (s *Server) start() error {
	// fsync=off: a test server's durability is not under test, and it saves seconds.
	fsync := "off"
	if s.durable {
		fsync = "on"
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=%s -c max_connections=200", s.port, s.dir, fsync)
	out, err := s.run("pg_ctl", "-D", s.data(), "-l", filepath.Join(s.dir, "server.log"), "-o", opts, "-w", "-t", "60", "start")
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	s.stopped = false
	return nil
}

// Stop stops the server at once (as a crash or an outage does: open connections break).
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if out, err := s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "-t", "30", "stop"); err != nil {
		t.Fatalf("stop the test PostgreSQL server: %v\n%s", err, out)
	}
	s.stopped = true
}

// Restart starts a stopped server again on the same port and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// URL is the connection URL of database name on the server.
func (s *Server) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, name)
}

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// NewDatabase creates a new, empty database and returns its name.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name, err := s.CreateDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// CreateDatabase creates a new, empty database and returns its name (NewDatabase outside
// a test).
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("coffer_%d", s.count.Add(1))
	admin, err := store.OpenPostgres(ctx, s.URL("postgres"), store.PostgresOptions{MaxOpenConns: 1})
	if err != nil {
		return "", err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		return "", fmt.Errorf("create test database: %w", err)
	}
	return name, nil
}

// DB opens a new, empty database on the server as a store and closes it when t ends.
func (s *Server) DB(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.OpenPostgres(t.Context(), s.URL(s.NewDatabase(t)), store.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Dump returns pg_dump's plain SQL dump of database name (schema and rows), as an
// operator's backup holds it.
func (s *Server) Dump(t testing.TB, name string) []byte {
	t.Helper()
	out, err := s.run("pg_dump", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-U", "postgres", "--no-owner", name)
	if err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	return out
}

// Restore loads a plain SQL dump (Dump's) into database name with psql, in one
// transaction that stops at the first error, as an operator restores a backup.
func (s *Server) Restore(t testing.TB, name string, dump []byte) {
	t.Helper()
	out, err := s.runInput(bytes.NewReader(dump), "psql", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-U", "postgres",
		"-d", name, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-")
	if err != nil {
		t.Fatalf("psql (restore into %s): %v\n%s", name, err, out)
	}
}

func (s *Server) run(name string, args ...string) ([]byte, error) {
	return s.runInput(nil, name, args...)
}

func (s *Server) runInput(stdin io.Reader, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Stdin = stdin
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// findBin finds the directory holding initdb and pg_ctl: $COFFER_PG_BIN, Debian's
// /usr/lib/postgresql/<newest>/bin, /usr/local/bin or PATH.
func findBin() (string, error) {
	var dirs []string
	if d := os.Getenv("COFFER_PG_BIN"); d != "" {
		dirs = append(dirs, d)
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(versions, func(i, j int) bool { return pgVersion(versions[i]) > pgVersion(versions[j]) })
	dirs = append(dirs, versions...)
	dirs = append(dirs, "/usr/local/bin", "/usr/local/pgsql/bin")
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL (initdb, pg_ctl) is not installed, and the metadata suites need a real server: " +
		"run `apt-get install postgresql` (scripts/test installs it), or set COFFER_PG_BIN to the directory holding initdb and pg_ctl")
}

func pgVersion(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
