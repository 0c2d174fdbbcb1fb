package pgtest_test

import (
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
)

func TestStartAndDatabases(t *testing.T) {
	srv := pgtest.Start(t)
	a, b := srv.DB(t), srv.DB(t)
	if a.Dialect() != store.PostgreSQL {
		t.Fatalf("dialect %v", a.Dialect())
	}
	if _, err := a.ExecContext(t.Context(), `CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ExecContext(t.Context(), `CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatalf("a second database is not empty: %v", err)
	}
	var v string
	if err := a.QueryRowContext(t.Context(), `SELECT current_setting('server_version_num')`).Scan(&v); err != nil || v == "" {
		t.Fatalf("server version: %q, %v", v, err)
	}
}
