package metadatatest_test

import (
	"testing"

	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/metadatatest"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

func sqlMetadata(t *testing.T, db *store.DB) registry.Metadata {
	m, err := registry.NewSQLMetadata(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestSQLite(t *testing.T) {
	metadatatest.Run(t, func(t *testing.T) registry.Metadata { return sqlMetadata(t, storetest.SQLite(t)) })
}

func TestPostgreSQL(t *testing.T) {
	srv := pgtest.Start(t)
	metadatatest.Run(t, func(t *testing.T) registry.Metadata { return sqlMetadata(t, srv.DB(t)) })
}
