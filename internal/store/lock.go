package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"fmt"
	"sync"
)

// Lock takes the named lock, waiting until it is free or ctx ends, and returns the
// function that releases it. It is the lock every replica on this database shares: a part
// uses it where the single process's mutex used to be enough (the registry's per-digest
// lock between pushes and the garbage collector, the trust metadata of one repository).
//
// On PostgreSQL it is a session-level advisory lock (pg_advisory_lock on the hash of name)
// held on a connection of a pool of its own, so holders never starve the queries they run
// while holding it; a replica that dies releases its locks when its connections close.
// Inside one process the lock is first taken in memory, so each name costs at most one
// connection per replica. On SQLite, a database one process owns, the in-memory lock is
// the whole lock.
func (db *DB) Lock(ctx context.Context, name string) (unlock func(), err error) {
	release, err := db.locks.lock(ctx, name)
	if err != nil {
		return nil, err
	}
	if db.dialect != PostgreSQL {
		return release, nil
	}
	conn, err := db.lockPool.Conn(ctx)
	if err != nil {
		release()
		return nil, fmt.Errorf("take the lock %s: %w", name, err)
	}
	key := lockKey(name)
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(?)`, key); err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn }) // whatever state it is in, not reused
		conn.Close()
		release()
		return nil, fmt.Errorf("take the lock %s: %w", name, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			// A background context: the holder's request may have ended, the lock must still go.
			if _, err := conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(?)`, key); err != nil {
				// Closing the session releases every lock it holds.
				conn.Raw(func(any) error { return driver.ErrBadConn })
			}
			conn.Close()
			release()
		})
	}, nil
}

// lockKey maps a lock name to PostgreSQL's 64-bit advisory lock key space. Migrations use
// migrationLockKey, outside the names' hashes only by improbability (2^-64).
func lockKey(name string) int64 {
	sum := sha256.Sum256([]byte("coffer lock\x00" + name))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// lockPoolSize bounds the connections of a replica's lock pool: the locks held at once
// on different names. A holder beyond it waits for a connection, as for the lock.
const lockPoolSize = 32

// openLockPool opens the pool a PostgreSQL store's locks are held on.
func openLockPool(c driver.Connector) *sql.DB {
	p := sql.OpenDB(c)
	p.SetMaxOpenConns(lockPoolSize)
	p.SetMaxIdleConns(4)
	return p
}

// memLocks is a set of in-process mutexes by name, created on demand and dropped when unused.
type memLocks struct {
	mu    sync.Mutex
	locks map[string]*memLock
}

type memLock struct {
	ch   chan struct{} // a token: holding it is holding the lock
	refs int
}

func (m *memLocks) lock(ctx context.Context, name string) (func(), error) {
	m.mu.Lock()
	if m.locks == nil {
		m.locks = map[string]*memLock{}
	}
	l := m.locks[name]
	if l == nil {
		l = &memLock{ch: make(chan struct{}, 1)}
		m.locks[name] = l
	}
	l.refs++
	m.mu.Unlock()
	drop := func() {
		m.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(m.locks, name)
		}
		m.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
	case <-ctx.Done():
		drop()
		return nil, fmt.Errorf("take the lock %s: %w", name, ctx.Err())
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-l.ch
			drop()
		})
	}, nil
}
