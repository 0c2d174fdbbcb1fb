package store

import (
	"strconv"
	"strings"
)

// Dialect names the SQL engine behind a DB. Parts write one SQL text for both: '?'
// placeholders, TEXT/INTEGER/BLOB columns, ON CONFLICT upserts, no LIMIT -1, no PRAGMA,
// no INSERT OR IGNORE/REPLACE. The differences are bridged here, in one place:
//   - placeholders: '?' is rewritten to $1, $2, … for PostgreSQL (rebind) by the driver
//     wrapper, so every Exec/Query/Prepare on the DB, a Conn or a Tx is covered;
//   - column types in migration steps (pgTypes): INTEGER is 64-bit in SQLite but 32-bit
//     in PostgreSQL, so it becomes BIGINT; BLOB becomes BYTEA; TEXT becomes TEXT COLLATE
//     "C", because SQLite compares text bytewise (BINARY) and the registry's lexical
//     pagination (tags, catalog) relies on that order whatever the database's locale;
//   - write isolation: InTx on PostgreSQL is SERIALIZABLE and retried on serialization
//     failures, which is what SQLite's single writer gave every transaction;
//   - durability of one connection (SetRelaxedDurability), migrations' lock, errors.
type Dialect int

const (
	// SQLite is the embedded default (modernc.org/sqlite).
	SQLite Dialect = iota
	// PostgreSQL is the scale-out metadata store (pgx v5 through database/sql).
	PostgreSQL
)

func (d Dialect) String() string {
	if d == PostgreSQL {
		return "postgresql"
	}
	return "sqlite"
}

// rebind rewrites '?' placeholders to PostgreSQL's $n, leaving string literals, quoted
// identifiers and comments alone.
func rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := skipQuoted(q, i, c)
			b.WriteString(q[i:j])
			i = j - 1
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i
			}
			b.WriteString(q[i : i+j])
			i += j - 1
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := strings.Index(q[i+2:], "*/")
			end := len(q)
			if j >= 0 {
				end = i + 2 + j + 2
			}
			b.WriteString(q[i:end])
			i = end - 1
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// skipQuoted returns the index just after the quoted run starting at q[i] (a doubled
// quote inside is an escaped one).
func skipQuoted(q string, i int, quote byte) int {
	for j := i + 1; j < len(q); j++ {
		if q[j] == quote {
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(q)
}

// pgTypes translates a migration step's column types for PostgreSQL (see Dialect), word
// by word outside literals and comments.
func pgTypes(step string) string {
	var b strings.Builder
	for i := 0; i < len(step); i++ {
		c := step[i]
		switch {
		case c == '\'' || c == '"':
			j := skipQuoted(step, i, c)
			b.WriteString(step[i:j])
			i = j - 1
		case isWord(c) && (i == 0 || !isWord(step[i-1])):
			j := i
			for j < len(step) && isWord(step[j]) {
				j++
			}
			w := step[i:j]
			switch strings.ToUpper(w) {
			case "INTEGER":
				w = "BIGINT"
			case "BLOB":
				w = "BYTEA"
			case "TEXT":
				w = `TEXT COLLATE "C"`
			}
			b.WriteString(w)
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isWord(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
