package registry

import (
	"context"
	"database/sql"
	"sync"

	"github.com/cofferhq/coffer/internal/store"
)

// stmtCache keeps the prepared statements of the push path's queries, on SQLite only.
// modernc's SQLite compiles every statement it is handed as text (sqlite3_prepare: parse
// and code generation) each time it runs, which was a tenth of the server's CPU for a
// small push (nine statements); a prepared statement is compiled once per connection
// (database/sql re-prepares it on each pool connection the first time it is used there).
// PostgreSQL's driver (pgx) already caches the statements it sends, so there the cache is
// not used.
type stmtCache struct {
	enabled bool
	prepare func(ctx context.Context, q string) (*sql.Stmt, error)
	mu      sync.Mutex
	stmts   map[string]*sql.Stmt
}

func newStmtCache(dialect store.Dialect, prepare func(ctx context.Context, q string) (*sql.Stmt, error)) *stmtCache {
	return &stmtCache{enabled: dialect == store.SQLite, prepare: prepare, stmts: map[string]*sql.Stmt{}}
}

// get returns q prepared, or nil when statements are not cached (or q does not prepare,
// in which case running it as text reports the error).
func (c *stmtCache) get(ctx context.Context, q string) *sql.Stmt {
	if !c.enabled {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.stmts[q]; ok {
		return st
	}
	st, err := c.prepare(ctx, q)
	if err != nil {
		return nil
	}
	c.stmts[q] = st
	return st
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.stmts {
		st.Close()
		delete(c.stmts, q)
	}
}

// exec runs q in tx, prepared when cached.
func (c *stmtCache) exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	if st := c.get(ctx, q); st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, q, args...)
}

// queryRow runs q on db (or, for a cache bound to one connection, on it), prepared when
// cached.
func (c *stmtCache) queryRow(ctx context.Context, db interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}, q string, args ...any) *sql.Row {
	if st := c.get(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return db.QueryRowContext(ctx, q, args...)
}

// execOn runs q on db (a pool or the connection the cache is bound to), prepared when
// cached.
func (c *stmtCache) execOn(ctx context.Context, db interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}, q string, args ...any) (sql.Result, error) {
	if st := c.get(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return db.ExecContext(ctx, q, args...)
}
