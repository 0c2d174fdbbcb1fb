package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// engine opens fresh stores on one engine; replica opens a second pool on the same
// database, as another replica would.
type engine struct {
	name    string
	open    func(t *testing.T) (db *store.DB, replica func() *store.DB)
	busyErr func(t *testing.T, db *store.DB) error
}

func engines(t *testing.T) []engine {
	srv := pgtest.Start(t)
	return []engine{
		{
			name: "sqlite",
			open: func(t *testing.T) (*store.DB, func() *store.DB) {
				path := filepath.Join(t.TempDir(), "m.db")
				return storetest.SQLiteAt(t, path), func() *store.DB { return storetest.SQLiteAt(t, path) }
			},
			busyErr: func(t *testing.T, db *store.DB) error {
				// A writer holds the database; a connection that will not wait is refused.
				return storetest.BusyError(t)
			},
		},
		{
			name: "postgresql",
			open: func(t *testing.T) (*store.DB, func() *store.DB) {
				name := srv.NewDatabase(t)
				o := func() *store.DB {
					db, err := store.OpenPostgres(t.Context(), srv.URL(name), store.PostgresOptions{})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { db.Close() })
					return db
				}
				return o(), o
			},
			busyErr: func(t *testing.T, db *store.DB) error {
				ctx := t.Context()
				if _, err := db.ExecContext(ctx, `CREATE TABLE b (x INTEGER PRIMARY KEY); INSERT INTO b VALUES (1)`); err != nil {
					t.Fatal(err)
				}
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback()
				if _, err := tx.ExecContext(ctx, `SELECT x FROM b WHERE x = ? FOR UPDATE`, 1); err != nil {
					t.Fatal(err)
				}
				_, err = db.ExecContext(ctx, `SELECT x FROM b WHERE x = ? FOR UPDATE NOWAIT`, 1)
				return err
			},
		},
	}
}

func TestEngines(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			t.Run("UniqueViolation", func(t *testing.T) {
				db, _ := e.open(t)
				ctx := t.Context()
				if err := db.Migrate(ctx, "u", []string{`CREATE TABLE u (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE)`}); err != nil {
					t.Fatal(err)
				}
				if _, err := db.ExecContext(ctx, `INSERT INTO u (id, name) VALUES (?, ?)`, "1", "a"); err != nil {
					t.Fatal(err)
				}
				_, err := db.ExecContext(ctx, `INSERT INTO u (id, name) VALUES (?, ?)`, "1", "b")
				if !store.IsUniqueViolation(err) {
					t.Fatalf("duplicate primary key not classified: %v", err)
				}
				_, err = db.ExecContext(ctx, `INSERT INTO u (id, name) VALUES (?, ?)`, "2", "a")
				if !store.IsUniqueViolation(err) {
					t.Fatalf("duplicate unique column not classified: %v", err)
				}
				_, err = db.ExecContext(ctx, `INSERT INTO u (id) VALUES (?)`, "3") // NOT NULL, not unique
				if err == nil || store.IsUniqueViolation(err) || store.IsBusy(err) || store.IsConnectionLost(err) {
					t.Fatalf("a NOT NULL violation classified wrongly: %v", err)
				}
			})
			t.Run("Busy", func(t *testing.T) {
				db, _ := e.open(t)
				err := e.busyErr(t, db)
				if !store.IsBusy(err) || store.IsUniqueViolation(err) {
					t.Fatalf("contention not classified as busy: %v", err)
				}
			})
			t.Run("MigrateConcurrentReplicas", func(t *testing.T) {
				_, replica := e.open(t)
				steps := []string{
					`CREATE TABLE m (id INTEGER PRIMARY KEY, v BLOB); CREATE INDEX m_v ON m (v)`,
					`INSERT INTO m (id, v) VALUES (1, NULL)`,
				}
				const n = 6
				dbs := make([]*store.DB, n)
				for i := range dbs {
					dbs[i] = replica()
				}
				var wg sync.WaitGroup
				errs := make([]error, n)
				for i, db := range dbs {
					wg.Add(1)
					go func() { defer wg.Done(); errs[i] = db.Migrate(t.Context(), "m", steps) }()
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("replica %d: %v", i, err)
					}
				}
				var rows int
				if err := dbs[0].QueryRowContext(t.Context(), `SELECT COUNT(*) FROM m`).Scan(&rows); err != nil || rows != 1 {
					t.Fatalf("step 2 applied %d times (%v)", rows, err)
				}
			})
			t.Run("InTxSerialises", func(t *testing.T) {
				db, replica := e.open(t)
				ctx := t.Context()
				if err := db.Migrate(ctx, "c", []string{`CREATE TABLE c (id INTEGER PRIMARY KEY, n INTEGER NOT NULL); INSERT INTO c VALUES (1, 0)`}); err != nil {
					t.Fatal(err)
				}
				// Read-modify-write from two "replicas" at once: no increment may be lost.
				dbs := []*store.DB{db, replica()}
				const n = 20
				var wg sync.WaitGroup
				errs := make(chan error, n)
				for i := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs <- dbs[i%2].InTx(ctx, func(tx *sql.Tx) error {
							var v int64
							if err := tx.QueryRowContext(ctx, `SELECT n FROM c WHERE id = ?`, 1).Scan(&v); err != nil {
								return err
							}
							_, err := tx.ExecContext(ctx, `UPDATE c SET n = ? WHERE id = ?`, v+1, 1)
							return err
						})
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				var v int
				if err := db.QueryRowContext(ctx, `SELECT n FROM c WHERE id = ?`, 1).Scan(&v); err != nil || v != n {
					t.Fatalf("counter = %d after %d increments (%v)", v, n, err)
				}
			})
			t.Run("RelaxedDurability", func(t *testing.T) {
				db, _ := e.open(t)
				conn, err := db.Conn(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if err := db.SetRelaxedDurability(t.Context(), conn, true); err != nil {
					t.Fatal(err)
				}
				if err := db.SetRelaxedDurability(t.Context(), conn, false); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("LockExcludesReplicas", func(t *testing.T) {
				db, replica := e.open(t)
				// SQLite's database belongs to one process: its lock is the process's.
				// PostgreSQL's is every replica's: a second pool is another replica.
				dbs := []*store.DB{db, db}
				if db.Dialect() == store.PostgreSQL {
					dbs[1] = replica()
				}
				var held, overlaps, entered atomic.Int32
				var wg sync.WaitGroup
				for i := range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						unlock, err := dbs[i%2].Lock(t.Context(), "registry/digest/x")
						if err != nil {
							t.Error(err)
							return
						}
						if held.Add(1) > 1 {
							overlaps.Add(1)
						}
						entered.Add(1)
						time.Sleep(5 * time.Millisecond)
						held.Add(-1)
						unlock()
						unlock() // twice is harmless
					}()
				}
				wg.Wait()
				if overlaps.Load() != 0 || entered.Load() != 8 {
					t.Fatalf("%d of 8 holders overlapped, %d entered", overlaps.Load(), entered.Load())
				}

				// Another name is not blocked; a holder elsewhere makes a waiter wait until its
				// context ends, with an error.
				unlock, err := dbs[0].Lock(t.Context(), "a")
				if err != nil {
					t.Fatal(err)
				}
				defer unlock()
				other, err := dbs[1].Lock(t.Context(), "b")
				if err != nil {
					t.Fatal(err)
				}
				other()
				ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
				defer cancel()
				if _, err := dbs[1].Lock(ctx, "a"); err == nil {
					t.Fatal("a lock held by another replica was taken twice")
				}
				unlock()
				again, err := dbs[1].Lock(t.Context(), "a")
				if err != nil {
					t.Fatalf("the released lock cannot be taken: %v", err)
				}
				again()
			})
		})
	}
}

func TestPostgresConnectionLost(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := t.Context()
	// Nothing listens on a port just freed: the open fails, classified as unreachable.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	_, err = store.OpenPostgres(ctx, fmt.Sprintf("postgres://postgres:s3cret-pw@127.0.0.1:%d/x?sslmode=disable&connect_timeout=5", port), store.PostgresOptions{})
	if !store.IsConnectionLost(err) {
		t.Fatalf("unreachable database not classified: %v", err)
	}
	if err != nil && contains(err.Error(), "s3cret-pw") {
		t.Fatalf("the error shows the password: %v", err)
	}
	// A connection the server ends (as a restart does) is classified as lost.
	db := srv.DB(t)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var pid int
	if err := conn.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `SELECT pg_terminate_backend(?)`, pid); err != nil {
		t.Fatal(err)
	}
	_, err = conn.ExecContext(ctx, `SELECT 1`)
	if !store.IsConnectionLost(err) {
		t.Fatalf("a terminated connection not classified: %v", err)
	}
	// A statement on a connection pgx has already closed (after a failure of its socket)
	// fails with pgconn's "conn closed", classified as lost too.
	pc, err := pgconn.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	pc.Close(ctx)
	if _, err := pc.Exec(ctx, `SELECT 1`).ReadAll(); !store.IsConnectionLost(err) {
		t.Fatalf("a closed pgx connection not classified: %v", err)
	}
	if store.IsConnectionLost(context.Canceled) || store.IsConnectionLost(errors.New("other")) {
		t.Fatal("unrelated errors classified as a lost connection")
	}
	// The pool recovers with a new connection.
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("the pool did not recover: %v", err)
	}
}

func TestOpenRejectsUnknownMetadata(t *testing.T) {
	_, err := store.Open(t.Context(), "mysql://u:pw@h/db", filepath.Join(t.TempDir(), "m.db"))
	if err == nil || contains(err.Error(), "pw@") {
		t.Fatalf("Open(mysql) = %v", err)
	}
	db, err := store.Open(t.Context(), "", filepath.Join(t.TempDir(), "m.db"))
	if err != nil || db.Dialect() != store.SQLite {
		t.Fatalf("Open(\"\") = %v", err)
	}
	db.Close()
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
