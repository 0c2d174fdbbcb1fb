package storetest_test

import (
	"path/filepath"
	"testing"

	"github.com/cofferhq/coffer/internal/store/storetest"
)

func TestSQLite(t *testing.T) {
	db := storetest.SQLite(t)
	if _, err := db.ExecContext(t.Context(), `CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	other := storetest.SQLite(t)
	if _, err := other.ExecContext(t.Context(), `CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatalf("a second store is not empty: %v", err)
	}
}

func TestSQLiteAtReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	db := storetest.SQLiteAt(t, path)
	if _, err := db.ExecContext(t.Context(), `CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (7)`); err != nil {
		t.Fatal(err)
	}
	again := storetest.SQLiteAt(t, path)
	var x int
	if err := again.QueryRowContext(t.Context(), `SELECT x FROM t`).Scan(&x); err != nil || x != 7 {
		t.Fatalf("reopened store: %d, %v", x, err)
	}
}
