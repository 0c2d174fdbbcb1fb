package pgtest

import (
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// Open opens a new, empty metadata store of one engine for a test and closes it when the
// test ends.
type Open func(t testing.TB) *store.DB

// Engines runs suite once per metadata engine, as the subtests "sqlite" and "postgresql",
// each given an opener of fresh, empty stores of that engine: a part's storage suite is
// written once and proven on both. The PostgreSQL server (about 3 s to start) is shared
// by every store the subtest opens; each store is a database of its own.
func Engines(t *testing.T, suite func(t *testing.T, open Open)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		suite(t, func(t testing.TB) *store.DB { return storetest.SQLite(t) })
	})
	t.Run("postgresql", func(t *testing.T) {
		srv := Start(t)
		suite(t, srv.DB)
	})
}
