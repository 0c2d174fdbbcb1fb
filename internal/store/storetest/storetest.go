// Package storetest opens metadata stores for tests, so that each test file does not
// repeat the open, check and close of a SQLite database in a temporary directory.
package storetest

import (
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
