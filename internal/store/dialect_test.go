package store

import "testing"

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE x = ? AND y = ?`, `SELECT a FROM t WHERE x = $1 AND y = $2`},
		{`SELECT '?', "a?b", ? -- what?
		/* ? */ FROM t WHERE z = ?`, `SELECT '?', "a?b", $1 -- what?
		/* ? */ FROM t WHERE z = $2`},
		{`SELECT 'it''s ?' WHERE a = ?`, `SELECT 'it''s ?' WHERE a = $1`},
		{`VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, `VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`},
	} {
		if got := rebind(tc.in); got != tc.want {
			t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPGTypes(t *testing.T) {
	in := `CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL, b BLOB, integer_count integer, note TEXT DEFAULT 'INTEGER BLOB')`
	want := `CREATE TABLE t (id TEXT COLLATE "C" PRIMARY KEY, n BIGINT NOT NULL, b BYTEA, integer_count BIGINT, note TEXT COLLATE "C" DEFAULT 'INTEGER BLOB')`
	if got := pgTypes(in); got != want {
		t.Errorf("pgTypes:\n got %s\nwant %s", got, want)
	}
}
