package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// IsPostgresURL reports whether a --metadata value names a PostgreSQL database.
func IsPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// PostgresOptions are the pool limits of a PostgreSQL store (zero: the defaults).
type PostgresOptions struct {
	// MaxOpenConns bounds this replica's connections (default 16): the server's
	// max_connections is shared by every replica.
	MaxOpenConns int
	// ConnMaxLifetime recycles connections (default 30 minutes), so a fail-over or a
	// load balancer in front of the database is followed.
	ConnMaxLifetime time.Duration
}

// OpenPostgres opens the PostgreSQL database named by url (a libpq URL or key=value
// string; TLS with sslmode=verify-full and sslrootcert=..., as libpq) and checks it is
// reachable. Queries written with '?' placeholders run unchanged (see Dialect).
func OpenPostgres(ctx context.Context, url string, opts PostgresOptions) (*DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL, password included: do not wrap it.
		return nil, fmt.Errorf("parse the PostgreSQL metadata URL: not a valid postgres:// URL or connection string")
	}
	connector := rebindConnector{stdlib.GetConnector(*cfg)}
	db := sql.OpenDB(connector)
	if opts.MaxOpenConns <= 0 {
		opts.MaxOpenConns = 16
	}
	if opts.ConnMaxLifetime <= 0 {
		opts.ConnMaxLifetime = 30 * time.Minute
	}
	db.SetMaxOpenConns(opts.MaxOpenConns)
	db.SetMaxIdleConns(opts.MaxOpenConns)
	db.SetConnMaxLifetime(opts.ConnMaxLifetime)
	db.SetConnMaxIdleTime(5 * time.Minute)
	where := cfg.Host
	if cfg.Port != 0 {
		where = fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
	}
	where += "/" + cfg.Database
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open the PostgreSQL metadata database %s (is it running and reachable, are the user and password right?): %w", where, err)
	}
	return &DB{DB: db, path: where, dialect: PostgreSQL, lockPool: openLockPool(connector)}, nil
}

// rebindConnector wraps pgx's connector so that every statement's '?' placeholders are
// rewritten once, here, for all of Coffer's SQL.
type rebindConnector struct{ driver.Connector }

func (c rebindConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &rebindConn{Conn: conn.(*stdlib.Conn)}, nil
}

// rebindConn is pgx's connection with '?' rewritten; every optional interface pgx's
// connection has is passed through.
type rebindConn struct{ *stdlib.Conn }

var (
	_ driver.ConnPrepareContext = (*rebindConn)(nil)
	_ driver.ExecerContext      = (*rebindConn)(nil)
	_ driver.QueryerContext     = (*rebindConn)(nil)
	_ driver.ConnBeginTx        = (*rebindConn)(nil)
	_ driver.Pinger             = (*rebindConn)(nil)
	_ driver.NamedValueChecker  = (*rebindConn)(nil)
	_ driver.SessionResetter    = (*rebindConn)(nil)
)

func (c *rebindConn) Prepare(q string) (driver.Stmt, error) { return c.Conn.Prepare(rebind(q)) }

func (c *rebindConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(ctx, rebind(q))
}

func (c *rebindConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, rebind(q), args)
}

func (c *rebindConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(ctx, rebind(q), args)
}

// migrationLockKey is the PostgreSQL advisory lock every replica's migrations take.
const migrationLockKey = 0x636f66666572 // "coffer"
