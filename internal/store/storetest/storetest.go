// Package storetest opens metadata stores for tests, so that each test file does not
// repeat the open, check and close of a SQLite database in a temporary directory.
package storetest

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
)

// SQLite opens a new, empty SQLite metadata store (metadata.db in a temporary directory of
// t) and closes it when the test ends.
func SQLite(t testing.TB) *store.DB {
	t.Helper()
	return SQLiteAt(t, filepath.Join(t.TempDir(), "metadata.db"))
}

// SQLiteAt opens (creating it if needed) the SQLite metadata store at path and closes it
// when the test ends. Tests that reopen a database or read its files use it.
func SQLiteAt(t testing.TB, path string) *store.DB {
	t.Helper()
	db, err := store.OpenSQLite(t.Context(), path)
	if err != nil {
		t.Fatalf("open the test metadata store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// BusyError returns the error a real SQLite database gives a writer that will not wait
// while another writer holds it (busy_timeout 0), for tests of how busy errors are
// classified and answered.
func BusyError(t testing.TB) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "busy.db")
	holder := SQLiteAt(t, path)
	tx, err := holder.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(t.Context(), `CREATE TABLE a (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, busy := other.ExecContext(t.Context(), `CREATE TABLE b (x INTEGER)`)
	if busy == nil {
		t.Fatal("a second writer was not refused")
	}
	return busy
}
