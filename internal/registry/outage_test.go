package registry

import (
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
)

// TestUploadSessionsSurviveDatabaseRestart: the upload sessions' connection of its own is
// dropped by a database restart; while the database is down, recording a session fails as
// a lost connection (answered 503), and once it is back sessions are recorded again, with
// no restart of Coffer. Before, every later upload failed with "connection is already
// closed" (a 500) until the process restarted. (The session recorded before may be gone:
// its commit was not flushed, by design, and an immediate stop is a crash.)
func TestUploadSessionsSurviveDatabaseRestart(t *testing.T) {
	ctx := t.Context()
	srv := pgtest.Start(t)
	db, err := store.OpenPostgres(ctx, srv.URL(srv.NewDatabase(t)), store.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	meta, err := NewSQLMetadata(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	now := time.Now()
	upload := func(id string) error {
		return meta.CreateUpload(ctx, Upload{ID: id, Repo: "app", Created: now, Updated: now})
	}
	if err := upload("before"); err != nil {
		t.Fatal(err)
	}

	srv.Stop(t)
	for _, id := range []string{"during-1", "during-2"} {
		if err := upload(id); err == nil || !store.IsConnectionLost(err) {
			t.Fatalf("record a session with the database down: %v, want a lost connection", err)
		}
	}
	srv.Restart(t)
	for _, id := range []string{"after-1", "after-2"} {
		if err := upload(id); err != nil {
			t.Fatalf("record a session after the database restarted: %v", err)
		}
	}
}
