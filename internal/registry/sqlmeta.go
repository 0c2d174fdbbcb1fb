package registry

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/store"
)

// migrations are the registry's schema steps (append-only). Portable SQL: TEXT, INTEGER,
// BLOB, ON CONFLICT upserts; times are Unix nanoseconds. registry_uploads.hash_alg and
// hash_state are unused: a hash state holds plaintext, so running hashes stay in memory;
// likewise registry_manifests.annotations stays empty (annotations are manifest content,
// read from the sealed blob store).
var migrations = []string{`
CREATE TABLE registry_repositories (
	name TEXT PRIMARY KEY,
	created INTEGER NOT NULL
);
CREATE TABLE registry_blobs (
	digest TEXT PRIMARY KEY,
	size INTEGER NOT NULL,
	touched INTEGER NOT NULL
);
CREATE TABLE registry_links (
	repo TEXT NOT NULL,
	digest TEXT NOT NULL,
	touched INTEGER NOT NULL,
	PRIMARY KEY (repo, digest)
);
CREATE INDEX registry_links_digest ON registry_links (digest);
CREATE TABLE registry_manifests (
	repo TEXT NOT NULL,
	digest TEXT NOT NULL,
	media_type TEXT NOT NULL,
	size INTEGER NOT NULL,
	artifact_type TEXT NOT NULL,
	subject TEXT NOT NULL,
	annotations TEXT NOT NULL,
	created INTEGER NOT NULL,
	PRIMARY KEY (repo, digest)
);
CREATE INDEX registry_manifests_digest ON registry_manifests (digest);
CREATE INDEX registry_manifests_subject ON registry_manifests (repo, subject);
CREATE TABLE registry_manifest_refs (
	repo TEXT NOT NULL,
	manifest TEXT NOT NULL,
	ref TEXT NOT NULL,
	PRIMARY KEY (repo, manifest, ref)
);
CREATE INDEX registry_manifest_refs_ref ON registry_manifest_refs (ref, repo);
CREATE TABLE registry_tags (
	repo TEXT NOT NULL,
	name TEXT NOT NULL,
	digest TEXT NOT NULL,
	updated INTEGER NOT NULL,
	PRIMARY KEY (repo, name)
);
CREATE INDEX registry_tags_digest ON registry_tags (repo, digest);
CREATE TABLE registry_uploads (
	id TEXT PRIMARY KEY,
	repo TEXT NOT NULL,
	offset_bytes INTEGER NOT NULL,
	hash_alg TEXT NOT NULL,
	hash_state BLOB,
	created INTEGER NOT NULL,
	updated INTEGER NOT NULL
);
CREATE INDEX registry_uploads_updated ON registry_uploads (updated);
`}

// SQLMetadata is Metadata on Coffer's SQL store.
type SQLMetadata struct {
	db *store.DB
	// sessions is a connection of its own for upload-session rows, with relaxed
	// durability (SQLite synchronous=NORMAL: committed to the WAL, flushed by the next
	// fully synchronous commit; PostgreSQL synchronous_commit=off). A session is not content a client was told is stored:
	// losing one in a machine crash makes its client start that upload again, and saves a
	// flush per upload. Everything else (links, manifests, tags) stays fully synchronous.
	sessions   *sql.Conn
	sessionsMu sync.Mutex
	// stmts (on the pool) and sessionStmts (on sessions) are the push path's prepared
	// statements (stmts.go).
	stmts, sessionStmts *stmtCache

	// links feeds the group committer (runLinks); stop ends it.
	links chan linkOp
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

// NewSQLMetadata migrates the registry's tables and returns the store. Close releases
// its connection.
func NewSQLMetadata(ctx context.Context, db *store.DB) (*SQLMetadata, error) {
	if err := db.Migrate(ctx, "registry", migrations); err != nil {
		return nil, err
	}
	m := &SQLMetadata{db: db, links: make(chan linkOp), stop: make(chan struct{}), stmts: newStmtCache(db.Dialect(), db.PrepareContext)}
	conn, err := m.openSessions(ctx)
	if err != nil {
		return nil, fmt.Errorf("registry metadata: %w", err)
	}
	m.setSessions(conn)
	m.wg.Add(1)
	go m.runLinks()
	return m, nil
}

// setSessions makes conn the upload sessions' connection, with a statement cache of its
// own (statements prepared on a connection die with it). Callers hold sessionsMu or own m.
func (m *SQLMetadata) setSessions(conn *sql.Conn) {
	m.sessions = conn
	m.sessionStmts = newStmtCache(m.db.Dialect(), conn.PrepareContext)
}

// openSessions opens the upload sessions' connection.
func (m *SQLMetadata) openSessions(ctx context.Context) (*sql.Conn, error) {
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.db.SetRelaxedDurability(ctx, conn, true); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// Close stops the group committer and releases the store's own connection (not the
// database).
func (m *SQLMetadata) Close() error {
	m.once.Do(func() { close(m.stop) })
	m.wg.Wait()
	m.stmts.close()
	m.sessionsMu.Lock()
	defer m.sessionsMu.Unlock()
	if m.sessions == nil {
		return nil
	}
	m.sessionStmts.close()
	// Back to the default before the connection returns to the shared pool.
	m.db.SetRelaxedDurability(context.Background(), m.sessions, false)
	return m.sessions.Close()
}

// execSession runs q on the upload sessions' connection. A connection the database
// dropped (a restart, a network failure) is discarded and another opened at the next
// call, so that sessions work again once the database is back instead of failing with
// "connection is already closed" until Coffer restarts.
func (m *SQLMetadata) execSession(ctx context.Context, q string, args ...any) (sql.Result, error) {
	m.sessionsMu.Lock()
	defer m.sessionsMu.Unlock()
	for attempt := 0; ; attempt++ {
		if m.sessions == nil {
			conn, err := m.openSessions(ctx)
			if err != nil {
				return nil, err
			}
			m.setSessions(conn)
		}
		res, err := m.sessionStmts.execOn(ctx, m.sessions, q, args...)
		if err == nil || !(errors.Is(err, sql.ErrConnDone) || store.IsConnectionLost(err)) {
			return res, err
		}
		m.sessionStmts.close()                                       // prepared on the lost connection
		m.sessions.Raw(func(any) error { return driver.ErrBadConn }) // not back to the pool
		m.sessions.Close()
		m.sessions, m.sessionStmts = nil, nil
		// ErrConnDone: the statement never left; run it once on a new connection.
		if !errors.Is(err, sql.ErrConnDone) || attempt > 0 {
			return res, err
		}
	}
}

var _ Metadata = (*SQLMetadata)(nil)

func ns(t time.Time) int64 { return t.UnixNano() }

func fromNS(n int64) time.Time { return time.Unix(0, n).UTC() }

func (m *SQLMetadata) RepoBlob(ctx context.Context, repo string, d digest.Digest) (BlobInfo, error) {
	var b BlobInfo
	var touched int64
	err := m.stmts.queryRow(ctx, m.db, `SELECT b.size, l.touched FROM registry_links l
		JOIN registry_blobs b ON b.digest = l.digest WHERE l.repo = ? AND l.digest = ?`,
		repo, d.String()).Scan(&b.Size, &touched)
	if errors.Is(err, sql.ErrNoRows) {
		return b, fmt.Errorf("blob %s in %s: %w", d, repo, ErrNotFound)
	}
	if err != nil {
		return b, fmt.Errorf("look up blob: %w", err)
	}
	b.Digest, b.Touched = d, fromNS(touched)
	return b, nil
}

func (m *SQLMetadata) ReposWithBlob(ctx context.Context, d digest.Digest) ([]string, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT repo FROM registry_links WHERE digest = ? ORDER BY repo`, d.String())
	if err != nil {
		return nil, fmt.Errorf("look up blob: %w", err)
	}
	return scanStrings(rows)
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func (m *SQLMetadata) ensureRepo(ctx context.Context, tx *sql.Tx, repo string, now time.Time) error {
	_, err := m.stmts.exec(ctx, tx, `INSERT INTO registry_repositories (name, created) VALUES (?, ?)
		ON CONFLICT (name) DO NOTHING`, repo, ns(now))
	return err
}

func (m *SQLMetadata) touchBlob(ctx context.Context, tx *sql.Tx, d digest.Digest, size int64, now time.Time) error {
	_, err := m.stmts.exec(ctx, tx, `INSERT INTO registry_blobs (digest, size, touched) VALUES (?, ?, ?)
		ON CONFLICT (digest) DO UPDATE SET touched = excluded.touched`, d.String(), size, ns(now))
	return err
}

func (m *SQLMetadata) linkBlob(ctx context.Context, tx *sql.Tx, repo string, b BlobInfo, now time.Time) error {
	if err := m.ensureRepo(ctx, tx, repo, now); err != nil {
		return err
	}
	if err := m.touchBlob(ctx, tx, b.Digest, b.Size, now); err != nil {
		return err
	}
	_, err := m.stmts.exec(ctx, tx, `INSERT INTO registry_links (repo, digest, touched) VALUES (?, ?, ?)
		ON CONFLICT (repo, digest) DO UPDATE SET touched = excluded.touched`, repo, b.Digest.String(), ns(now))
	return err
}

func (m *SQLMetadata) LinkBlob(ctx context.Context, repo string, b BlobInfo, now time.Time) error {
	return m.submitLink(linkOp{repo: repo, b: b, now: now})
}

func (m *SQLMetadata) CompleteUpload(ctx context.Context, uploadID, repo string, b BlobInfo, now time.Time) error {
	return m.submitLink(linkOp{uploadID: uploadID, repo: repo, b: b, now: now})
}

// linkOp is one blob link to record (and upload session to end), done by the group
// committer.
type linkOp struct {
	uploadID, repo string
	b              BlobInfo
	now            time.Time
	done           chan error
}

func (m *SQLMetadata) applyLink(ctx context.Context, tx *sql.Tx, op linkOp) error {
	if err := m.linkBlob(ctx, tx, op.repo, op.b, op.now); err != nil {
		return err
	}
	if op.uploadID != "" {
		if _, err := m.stmts.exec(ctx, tx, `DELETE FROM registry_uploads WHERE id = ?`, op.uploadID); err != nil {
			return err
		}
	}
	return nil
}

// submitLink hands op to the group committer and waits until it is durable. Every
// finished upload ends here; concurrent ones share one transaction (one WAL flush)
// instead of queueing for the database's single writer one flush at a time.
func (m *SQLMetadata) submitLink(op linkOp) error {
	op.done = make(chan error, 1)
	select {
	case m.links <- op:
	case <-m.stop:
		return errors.New("the registry's metadata store is closed")
	}
	// Wait even if the request goes away: the link may be committed either way, and
	// the caller must know which.
	if err := <-op.done; err != nil {
		return fmt.Errorf("link blob %s to %s: %w", op.b.Digest, op.repo, err)
	}
	return nil
}

// runLinks is the group committer: it takes whatever links are waiting (up to 256) and
// records them in one transaction.
func (m *SQLMetadata) runLinks() {
	defer m.wg.Done()
	for {
		var first linkOp
		select {
		case first = <-m.links:
		case <-m.stop:
			return
		}
		batch := []linkOp{first}
	drain:
		for len(batch) < 256 {
			select {
			case op := <-m.links:
				batch = append(batch, op)
			default:
				break drain
			}
		}
		ctx := context.Background()
		err := m.db.InTx(ctx, func(tx *sql.Tx) error {
			for _, op := range batch {
				if err := m.applyLink(ctx, tx, op); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && len(batch) > 1 {
			// One bad op must not fail its neighbours: retry each alone.
			for _, op := range batch {
				op.done <- m.db.InTx(ctx, func(tx *sql.Tx) error { return m.applyLink(ctx, tx, op) })
			}
			continue
		}
		for _, op := range batch {
			op.done <- err
		}
	}
}

// referrersOf fails with *ReferencedError naming up to 10 manifests of repo (other than d
// itself) whose references include d. It runs inside the deleting transaction, so that a
// manifest pushed meanwhile is seen: the store's write transactions are serialised
// (SQLite's single writer; PostgreSQL SERIALIZABLE, see store.DB.InTx), and PutManifest
// checks its references in its own.
func referrersOf(ctx context.Context, tx *sql.Tx, repo string, d digest.Digest) error {
	rows, err := tx.QueryContext(ctx, `SELECT manifest FROM registry_manifest_refs
		WHERE repo = ? AND ref = ? AND manifest <> ? ORDER BY manifest LIMIT 10`, repo, d.String(), d.String())
	if err != nil {
		return err
	}
	by, err := scanStrings(rows)
	if err != nil || len(by) == 0 {
		return err
	}
	e := &ReferencedError{}
	for _, s := range by {
		e.By = append(e.By, digest.Digest(s))
	}
	return e
}

func (m *SQLMetadata) UnlinkBlob(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	var found bool
	err := m.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := referrersOf(ctx, tx, repo, d); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM registry_links WHERE repo = ? AND digest = ?`, repo, d.String())
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		found = n > 0
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("unlink blob %s from %s: %w", d, repo, err)
	}
	return found, nil
}

func (m *SQLMetadata) PutManifest(ctx context.Context, rec ManifestRecord, refs []Reference, tags []string, now time.Time) error {
	return m.db.InTx(ctx, func(tx *sql.Tx) error {
		var missing []Reference
		var mismatched []SizeMismatch
		for _, ref := range refs {
			q := `SELECT b.size FROM registry_links l JOIN registry_blobs b ON b.digest = l.digest
				WHERE l.repo = ? AND l.digest = ?`
			if ref.Manifest {
				q = `SELECT size FROM registry_manifests WHERE repo = ? AND digest = ?`
			}
			var size int64
			err := tx.QueryRowContext(ctx, q, rec.Repo, ref.Digest.String()).Scan(&size)
			if errors.Is(err, sql.ErrNoRows) {
				missing = append(missing, ref)
				continue
			}
			if err != nil {
				return err
			}
			if size != ref.Size {
				mismatched = append(mismatched, SizeMismatch{Reference: ref, Stored: size})
			}
		}
		if len(missing) > 0 {
			return &MissingError{Missing: missing}
		}
		if len(mismatched) > 0 {
			return &MismatchError{Mismatched: mismatched}
		}
		if err := m.ensureRepo(ctx, tx, rec.Repo, now); err != nil {
			return err
		}
		if err := m.touchBlob(ctx, tx, rec.Digest, rec.Size, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO registry_manifests
			(repo, digest, media_type, size, artifact_type, subject, annotations, created)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (repo, digest) DO UPDATE SET media_type = excluded.media_type`,
			rec.Repo, rec.Digest.String(), rec.MediaType, rec.Size, rec.ArtifactType,
			rec.Subject.String(), "", ns(now)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM registry_manifest_refs WHERE repo = ? AND manifest = ?`,
			rec.Repo, rec.Digest.String()); err != nil {
			return err
		}
		for _, ref := range refs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO registry_manifest_refs (repo, manifest, ref)
				VALUES (?, ?, ?) ON CONFLICT (repo, manifest, ref) DO NOTHING`,
				rec.Repo, rec.Digest.String(), ref.Digest.String()); err != nil {
				return err
			}
		}
		for _, tag := range tags {
			if _, err := tx.ExecContext(ctx, `INSERT INTO registry_tags (repo, name, digest, updated)
				VALUES (?, ?, ?, ?) ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest,
				updated = excluded.updated`, rec.Repo, tag, rec.Digest.String(), ns(now)); err != nil {
				return err
			}
		}
		return nil
	})
}

func scanManifest(sc interface{ Scan(...any) error }, repo string) (ManifestRecord, error) {
	var rec ManifestRecord
	var dg, subject, ann string
	var created int64
	if err := sc.Scan(&dg, &rec.MediaType, &rec.Size, &rec.ArtifactType, &subject, &ann, &created); err != nil {
		return rec, err
	}
	rec.Repo, rec.Digest, rec.Subject, rec.Created = repo, digest.Digest(dg), digest.Digest(subject), fromNS(created)
	return rec, nil
}

const manifestCols = `digest, media_type, size, artifact_type, subject, annotations, created`

func (m *SQLMetadata) Manifest(ctx context.Context, repo string, d digest.Digest) (ManifestRecord, error) {
	rec, err := scanManifest(m.db.QueryRowContext(ctx, `SELECT `+manifestCols+
		` FROM registry_manifests WHERE repo = ? AND digest = ?`, repo, d.String()), repo)
	if errors.Is(err, sql.ErrNoRows) {
		return rec, fmt.Errorf("manifest %s in %s: %w", d, repo, ErrNotFound)
	}
	if err != nil {
		return rec, fmt.Errorf("look up manifest: %w", err)
	}
	return rec, nil
}

func (m *SQLMetadata) Tag(ctx context.Context, repo, tag string) (digest.Digest, error) {
	var d string
	err := m.db.QueryRowContext(ctx, `SELECT digest FROM registry_tags WHERE repo = ? AND name = ?`, repo, tag).Scan(&d)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("tag %s in %s: %w", tag, repo, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("look up tag: %w", err)
	}
	return digest.Digest(d), nil
}

func (m *SQLMetadata) DeleteManifest(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	var found bool
	err := m.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := referrersOf(ctx, tx, repo, d); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM registry_manifests WHERE repo = ? AND digest = ?`, repo, d.String())
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if found = n > 0; !found {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM registry_manifest_refs WHERE repo = ? AND manifest = ?`, repo, d.String()); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM registry_tags WHERE repo = ? AND digest = ?`, repo, d.String())
		return err
	})
	if err != nil {
		return false, fmt.Errorf("delete manifest %s from %s: %w", d, repo, err)
	}
	return found, nil
}

func (m *SQLMetadata) DeleteTag(ctx context.Context, repo, tag string) (bool, error) {
	res, err := m.db.ExecContext(ctx, `DELETE FROM registry_tags WHERE repo = ? AND name = ?`, repo, tag)
	if err != nil {
		return false, fmt.Errorf("delete tag %s from %s: %w", tag, repo, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// limited appends a LIMIT for n to q (n < 0: none). SQLite's LIMIT -1 means "no limit"
// and PostgreSQL refuses it, so the clause is left out instead.
func limited(q string, args []any, n int) (string, []any) {
	if n < 0 {
		return q, args
	}
	return q + ` LIMIT ?`, append(args, n)
}

func (m *SQLMetadata) Tags(ctx context.Context, repo, last string, n int) ([]string, error) {
	q, args := limited(`SELECT name FROM registry_tags WHERE repo = ? AND name > ? ORDER BY name`, []any{repo, last}, n)
	rows, err := m.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	return scanStrings(rows)
}

func (m *SQLMetadata) TagDetails(ctx context.Context, repo string) ([]TagInfo, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT name, digest, updated FROM registry_tags WHERE repo = ? ORDER BY name`, repo)
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	defer rows.Close()
	var out []TagInfo
	for rows.Next() {
		var t TagInfo
		var d string
		var upd int64
		if err := rows.Scan(&t.Name, &d, &upd); err != nil {
			return nil, err
		}
		t.Digest, t.Updated = digest.Digest(d), fromNS(upd)
		out = append(out, t)
	}
	return out, rows.Err()
}

func (m *SQLMetadata) Repositories(ctx context.Context, last string, n int) ([]string, error) {
	q, args := limited(`SELECT name FROM registry_repositories WHERE name > ? ORDER BY name`, []any{last}, n)
	rows, err := m.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list repositories: %w", err)
	}
	return scanStrings(rows)
}

func (m *SQLMetadata) RepositoryInfo(ctx context.Context, repo string) (RepositoryInfo, error) {
	info := RepositoryInfo{Name: repo}
	var created int64
	err := m.db.QueryRowContext(ctx, `SELECT created FROM registry_repositories WHERE name = ?`, repo).Scan(&created)
	if errors.Is(err, sql.ErrNoRows) {
		return info, fmt.Errorf("repository %s: %w", repo, ErrNotFound)
	}
	if err != nil {
		return info, fmt.Errorf("look up repository: %w", err)
	}
	info.Created = fromNS(created)
	err = m.db.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM registry_manifests WHERE repo = ?),
		(SELECT COUNT(*) FROM registry_tags WHERE repo = ?),
		(SELECT COUNT(*) FROM registry_links WHERE repo = ?),
		(SELECT COALESCE(SUM(b.size), 0) FROM registry_links l JOIN registry_blobs b ON b.digest = l.digest WHERE l.repo = ?)`,
		repo, repo, repo, repo).Scan(&info.ManifestCount, &info.TagCount, &info.BlobCount, &info.Size)
	if err != nil {
		return info, fmt.Errorf("summarise repository: %w", err)
	}
	return info, nil
}

func (m *SQLMetadata) RepositoryInfos(ctx context.Context, last string, n int) ([]RepositoryInfo, error) {
	// One statement for the whole page: each figure is a correlated subquery answered by
	// the (repo, ...) primary keys, so the cost is one index range per table and
	// repository inside one round trip, not four queries per repository.
	q, args := limited(`SELECT r.name, r.created,
		(SELECT COUNT(*) FROM registry_manifests x WHERE x.repo = r.name),
		(SELECT COUNT(*) FROM registry_tags t WHERE t.repo = r.name),
		(SELECT COUNT(*) FROM registry_links l WHERE l.repo = r.name),
		(SELECT COALESCE(SUM(b.size), 0) FROM registry_links l JOIN registry_blobs b ON b.digest = l.digest WHERE l.repo = r.name)
		FROM registry_repositories r WHERE r.name > ? ORDER BY r.name`, []any{last}, n)
	rows, err := m.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("summarise repositories: %w", err)
	}
	defer rows.Close()
	var out []RepositoryInfo
	for rows.Next() {
		var info RepositoryInfo
		var created int64
		if err := rows.Scan(&info.Name, &created, &info.ManifestCount, &info.TagCount, &info.BlobCount, &info.Size); err != nil {
			return nil, fmt.Errorf("summarise repositories: %w", err)
		}
		info.Created = fromNS(created)
		out = append(out, info)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("summarise repositories: %w", err)
	}
	return out, nil
}

func (m *SQLMetadata) RepositoryExists(ctx context.Context, repo string) (bool, error) {
	var one int
	err := m.db.QueryRowContext(ctx, `SELECT 1 FROM registry_repositories WHERE name = ?`, repo).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up repository: %w", err)
	}
	return true, nil
}

func (m *SQLMetadata) DeleteRepository(ctx context.Context, repo string) ([]string, bool, error) {
	var uploads []string
	var found bool
	err := m.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM registry_repositories WHERE name = ?`, repo)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if found = n > 0; !found {
			return nil
		}
		rows, err := tx.QueryContext(ctx, `SELECT id FROM registry_uploads WHERE repo = ?`, repo)
		if err != nil {
			return err
		}
		if uploads, err = scanStrings(rows); err != nil {
			return err
		}
		for _, table := range []string{"registry_manifest_refs", "registry_tags", "registry_manifests", "registry_links", "registry_uploads"} {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE repo = ?`, repo); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("delete repository %s: %w", repo, err)
	}
	return uploads, found, nil
}

func (m *SQLMetadata) Referrers(ctx context.Context, repo string, d digest.Digest, artifactType string) ([]ManifestRecord, error) {
	q := `SELECT ` + manifestCols + ` FROM registry_manifests WHERE repo = ? AND subject = ?`
	args := []any{repo, d.String()}
	if artifactType != "" {
		q += ` AND artifact_type = ?`
		args = append(args, artifactType)
	}
	rows, err := m.db.QueryContext(ctx, q+` ORDER BY created, digest`, args...)
	if err != nil {
		return nil, fmt.Errorf("list referrers: %w", err)
	}
	defer rows.Close()
	var out []ManifestRecord
	for rows.Next() {
		rec, err := scanManifest(rows, repo)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

func (m *SQLMetadata) CreateUpload(ctx context.Context, u Upload) error {
	_, err := m.execSession(ctx, `INSERT INTO registry_uploads (id, repo, offset_bytes, hash_alg, hash_state, created, updated)
		VALUES (?, ?, ?, '', NULL, ?, ?)`, u.ID, u.Repo, u.Offset, ns(u.Created), ns(u.Updated))
	if err != nil {
		return fmt.Errorf("record upload: %w", err)
	}
	return nil
}

func (m *SQLMetadata) Upload(ctx context.Context, id string) (Upload, error) {
	u := Upload{ID: id}
	var created, updated int64
	err := m.stmts.queryRow(ctx, m.db, `SELECT repo, offset_bytes, created, updated
		FROM registry_uploads WHERE id = ?`, id).Scan(&u.Repo, &u.Offset, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("upload %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("look up upload: %w", err)
	}
	u.Created, u.Updated = fromNS(created), fromNS(updated)
	return u, nil
}

func (m *SQLMetadata) UpdateUpload(ctx context.Context, u Upload) error {
	res, err := m.execSession(ctx, `UPDATE registry_uploads SET offset_bytes = ?, updated = ?
		WHERE id = ?`, u.Offset, ns(u.Updated), u.ID)
	if err != nil {
		return fmt.Errorf("record upload progress: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("upload %s: %w", u.ID, ErrNotFound)
	}
	return nil
}

func (m *SQLMetadata) DeleteUpload(ctx context.Context, id string) error {
	if _, err := m.execSession(ctx, `DELETE FROM registry_uploads WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete upload: %w", err)
	}
	return nil
}

func (m *SQLMetadata) UploadsBefore(ctx context.Context, t time.Time) ([]Upload, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT id, repo FROM registry_uploads WHERE updated < ?`, ns(t))
	if err != nil {
		return nil, fmt.Errorf("list uploads: %w", err)
	}
	defer rows.Close()
	var out []Upload
	for rows.Next() {
		var u Upload
		if err := rows.Scan(&u.ID, &u.Repo); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

const garbageCond = `b.touched < ?
	AND NOT EXISTS (SELECT 1 FROM registry_manifest_refs r WHERE r.ref = b.digest)
	AND NOT EXISTS (SELECT 1 FROM registry_manifests m WHERE m.digest = b.digest)
	AND NOT EXISTS (SELECT 1 FROM registry_links l WHERE l.digest = b.digest AND l.touched >= ?)`

func (m *SQLMetadata) GarbageBlobs(ctx context.Context, cutoff time.Time) ([]BlobInfo, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT b.digest, b.size, b.touched FROM registry_blobs b WHERE `+garbageCond+
		` ORDER BY b.digest`, ns(cutoff), ns(cutoff))
	if err != nil {
		return nil, fmt.Errorf("find garbage: %w", err)
	}
	defer rows.Close()
	var out []BlobInfo
	for rows.Next() {
		var b BlobInfo
		var d string
		var touched int64
		if err := rows.Scan(&d, &b.Size, &touched); err != nil {
			return nil, err
		}
		b.Digest, b.Touched = digest.Digest(d), fromNS(touched)
		out = append(out, b)
	}
	return out, rows.Err()
}

func (m *SQLMetadata) DeleteBlobIfGarbage(ctx context.Context, d digest.Digest, cutoff time.Time) (bool, error) {
	var deleted bool
	err := m.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM registry_blobs WHERE digest IN
			(SELECT b.digest FROM registry_blobs b WHERE b.digest = ? AND `+garbageCond+`)`,
			d.String(), ns(cutoff), ns(cutoff))
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if deleted = n > 0; !deleted {
			return nil
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM registry_links WHERE digest = ?`, d.String())
		return err
	})
	if err != nil {
		return false, fmt.Errorf("delete blob %s: %w", d, err)
	}
	return deleted, nil
}

const staleLinkCond = `l.touched < ? AND NOT EXISTS (SELECT 1 FROM registry_manifest_refs r
	WHERE r.repo = l.repo AND r.ref = l.digest)`

func (m *SQLMetadata) StaleLinks(ctx context.Context, cutoff time.Time, del bool) (int, error) {
	if !del {
		var n int
		err := m.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM registry_links l WHERE `+staleLinkCond, ns(cutoff)).Scan(&n)
		if err != nil {
			return 0, fmt.Errorf("count stale links: %w", err)
		}
		return n, nil
	}
	res, err := m.db.ExecContext(ctx, `DELETE FROM registry_links WHERE (repo, digest) IN
		(SELECT l.repo, l.digest FROM registry_links l WHERE `+staleLinkCond+`)`, ns(cutoff))
	if err != nil {
		return 0, fmt.Errorf("remove stale links: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func (m *SQLMetadata) BlobKnown(ctx context.Context, d digest.Digest) (bool, error) {
	var one int
	err := m.stmts.queryRow(ctx, m.db, `SELECT 1 FROM registry_blobs WHERE digest = ?`, d.String()).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up blob: %w", err)
	}
	return true, nil
}
