package store

import (
	"context"
	"path/filepath"
	"testing"
)

func TestMigrateAppliesEachStepOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	steps := []string{`CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1)`}
	if err := db.Migrate(ctx, "t", steps); err != nil {
		t.Fatal(err)
	}
	// A second run must not re-apply step 1 (it would insert a second row).
	steps = append(steps, `INSERT INTO a VALUES (2)`)
	if err := db.Migrate(ctx, "t", steps); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, "t", steps); err != nil {
		t.Fatal(err)
	}
	var n, sum int
	if err := db.QueryRow(`SELECT COUNT(*), SUM(x) FROM a`).Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != 2 || sum != 3 {
		t.Fatalf("rows=%d sum=%d, want 2 rows summing to 3", n, sum)
	}
}
