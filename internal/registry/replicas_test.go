package registry

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
	"github.com/cofferhq/coffer/internal/clocktest"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
)

// TestGCDigestLockAcrossReplicas: two registries on one PostgreSQL database and one blob
// store are two replicas. While one holds a digest's lock (as a push placing that blob
// does), the other's garbage collector does not remove the blob; once it is released, it
// does. With the lock in process memory only, the collector would not wait.
func TestGCDigestLockAcrossReplicas(t *testing.T) {
	ctx := t.Context()
	srv := pgtest.Start(t)
	name := srv.NewDatabase(t)
	open := func() *store.DB {
		db, err := store.OpenPostgres(ctx, srv.URL(name), store.PostgresOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	drv, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktest.New(time.Now())
	replica := func(db *store.DB) *Service {
		meta, err := NewSQLMetadata(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { meta.Close() })
		return New(drv, meta, Options{GCGrace: time.Hour, UploadExpiry: time.Hour, Now: clk.Now, Lock: db.Lock})
	}
	dbA, dbB := open(), open()
	a, b := replica(dbA), replica(dbB)

	content := []byte("a blob no manifest references")
	d := digest.FromBytes(content)
	if _, err := a.PutBlob(ctx, "app", d, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour) // garbage now

	unlock, err := dbA.Lock(ctx, "registry/digest/"+string(d))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan GCReport, 1)
	go func() {
		rep, err := b.GC(context.WithoutCancel(ctx), false, nil)
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	select {
	case rep := <-done:
		t.Fatalf("replica B collected %+v while replica A held the digest's lock", rep.Blobs)
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := drv.Stat(ctx, blobPath(d)); err != nil {
		t.Fatalf("the blob went while its lock was held elsewhere: %v", err)
	}
	unlock()
	rep := <-done
	if len(rep.Blobs) != 1 || rep.Blobs[0].Digest != d {
		t.Fatalf("after the lock was released GC removed %+v, want %s", rep.Blobs, d)
	}
	if _, err := drv.Stat(ctx, blobPath(d)); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("the garbage blob is still stored: %v", err)
	}
}
