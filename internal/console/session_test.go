package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clocktest"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestSessionStorage runs the console's session store tests on SQLite and on PostgreSQL.
func TestSessionStorage(t *testing.T) {
	pgtest.Engines(t, func(t *testing.T, newDB pgtest.Open) {
		t.Run("SessionExpiry", func(t *testing.T) { testSessionExpiry(t, newDB) })
		t.Run("SessionStore", func(t *testing.T) { testSessionStore(t, newDB) })
	})
}

// testSessionExpiry: a session ends after Idle without use and after Absolute however
// active; an ended session is deleted from the store, and the sweep removes stale ones.
func testSessionExpiry(t *testing.T, newDB pgtest.Open) {
	ctx := context.Background()
	sessions, err := OpenSQLSessions(ctx, newDB(t))
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := &Console{cfg: Config{Sessions: sessions, Idle: 10 * time.Minute, Absolute: time.Hour, Now: clock.Now}}
	newSession := func() (string, *http.Request) {
		id := newSecret()
		now := clock.Now()
		if err := sessions.Create(ctx, Session{Hash: hashID(id), Principal: identity.Principal{ID: "u1", Kind: identity.KindUser, Name: "u"},
			CSRF: "c", Created: now, LastSeen: now, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", "/console/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: id})
		return id, r
	}
	c.cfg.Log = discard()

	// Idle: used every 9 minutes it lives; 10 minutes unused ends it.
	id, r := newSession()
	for range 5 {
		clock.Advance(9 * time.Minute)
		if _, ok := c.session(r); !ok {
			t.Fatal("a session used every 9 minutes ended")
		}
	}
	// Absolute: 45 minutes in; used every 9 minutes it still ends at one hour.
	clock.Advance(9 * time.Minute)
	if _, ok := c.session(r); !ok {
		t.Fatal("ended before its absolute expiry")
	}
	clock.Advance(9 * time.Minute) // 63 minutes
	if _, ok := c.session(r); ok {
		t.Fatal("a session outlived its absolute expiry")
	}
	if _, err := sessions.Get(ctx, hashID(id)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an expired session is still stored: %v", err)
	}

	_, r = newSession()
	clock.Advance(10 * time.Minute)
	if _, ok := c.session(r); ok {
		t.Fatal("a session unused for the idle time is still valid")
	}

	// The sweep deletes stale sessions no one came back for.
	stale, _ := newSession()
	clock.Advance(11 * time.Minute)
	if n, err := c.SweepSessions(ctx); err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v; want 1", n, err)
	}
	if _, err := sessions.Get(ctx, hashID(stale)); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("swept session still stored")
	}
	// A tampered or unknown cookie is no session.
	r = httptest.NewRequest("GET", "/console/", nil)
	r.AddCookie(&http.Cookie{Name: sessionCookie, Value: "not-a-session"})
	if _, ok := c.session(r); ok {
		t.Fatal("an unknown cookie was accepted")
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testSessionStore: every statement of SQLSessions. A session reads back as written
// (times to the millisecond); a second session with the same hash is refused as a unique
// violation; Touch moves last_seen; the sweep's bounds are inclusive (expired at now, idle
// at idleBefore); and a second replica's store on the same database sees the sessions and
// a sign-out made through the first.
func testSessionStore(t *testing.T, newDB pgtest.Open) {
	ctx := context.Background()
	db := newDB(t)
	a, err := OpenSQLSessions(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenSQLSessions(ctx, db) // another replica: the migration is applied once
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 123_000_000, time.UTC)
	se := Session{Hash: hashID(newSecret()), Principal: identity.Principal{ID: "u1", Kind: identity.KindUser, Name: "alice"},
		CSRF: newSecret(), Created: now, LastSeen: now, Expires: now.Add(8 * time.Hour)}
	if err := a.Create(ctx, se); err != nil {
		t.Fatal(err)
	}
	got, err := b.Get(ctx, se.Hash)
	if err != nil || got.Hash != se.Hash || got.Principal != se.Principal || got.CSRF != se.CSRF ||
		!got.Created.Equal(se.Created) || !got.LastSeen.Equal(se.LastSeen) || !got.Expires.Equal(se.Expires) {
		t.Fatalf("read back on the other replica: %+v %v, wrote %+v", got, err, se)
	}
	if err := b.Create(ctx, se); err == nil || !store.IsUniqueViolation(err) {
		t.Fatalf("a second session with the same hash: %v, want a unique violation", err)
	}
	if err := b.Touch(ctx, se.Hash, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Get(ctx, se.Hash); err != nil || !got.LastSeen.Equal(now.Add(time.Minute)) {
		t.Fatalf("after Touch: %+v %v", got, err)
	}
	if err := a.Touch(ctx, "unknown", now); err != nil {
		t.Fatalf("Touch of an unknown session: %v", err)
	}

	// The sweep: one session at its absolute expiry, one idle exactly to the bound, one fresh.
	mk := func(created, seen, expires time.Time) string {
		s := Session{Hash: hashID(newSecret()), Principal: se.Principal, CSRF: "c", Created: created, LastSeen: seen, Expires: expires}
		if err := a.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		return s.Hash
	}
	sweepAt, idleBefore := now.Add(time.Hour), now.Add(50*time.Minute)
	expired := mk(now, sweepAt, sweepAt)
	idle := mk(now, idleBefore, now.Add(8*time.Hour))
	fresh := mk(now, idleBefore.Add(time.Millisecond), now.Add(8*time.Hour))
	if err := a.Touch(ctx, se.Hash, sweepAt); err != nil {
		t.Fatal(err)
	}
	n, err := b.DeleteExpired(ctx, sweepAt, idleBefore)
	if err != nil || n != 2 {
		t.Fatalf("DeleteExpired = %d, %v; want 2", n, err)
	}
	for h, want := range map[string]bool{expired: false, idle: false, fresh: true, se.Hash: true} {
		if _, err := a.Get(ctx, h); (err == nil) != want || err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("session %s after the sweep: %v, want kept=%v", h[:8], err, want)
		}
	}

	// A sign-out through one replica ends the session on the other.
	if err := a.Delete(ctx, se.Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, se.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a signed-out session on the other replica: %v", err)
	}
	if err := b.Delete(ctx, se.Hash); err != nil {
		t.Fatalf("deleting it again: %v", err)
	}
}

// failingSessions is a real session store whose reads fail with err once fail is set: a
// database that stopped under the console.
type failingSessions struct {
	SessionStore
	fail error
}

func (f *failingSessions) Get(ctx context.Context, hash string) (Session, error) {
	if f.fail != nil {
		return Session{}, f.fail
	}
	return f.SessionStore.Get(ctx, hash)
}

// TestSessionLookupFailureKeepsSession: when the session store cannot be read, a signed-in
// page answers 503 with Retry-After (the database unreachable) or 500, keeps the session
// cookie and does not send the browser to sign in; once the store answers again the same
// cookie is signed in. A store that answers "no such session" still signs out.
func TestSessionLookupFailureKeepsSession(t *testing.T) {
	ctx := context.Background()
	real, err := OpenSQLSessions(ctx, storetest.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	sessions := &failingSessions{SessionStore: real}
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := &Console{pages: pages, cfg: Config{Sessions: sessions, Idle: 10 * time.Minute, Absolute: time.Hour, Now: clock.Now, Log: discard()}}
	id := newSecret()
	now := clock.Now()
	if err := real.Create(ctx, Session{Hash: hashID(id), Principal: identity.Principal{ID: "u1", Kind: identity.KindUser, Name: "u"},
		CSRF: "c", Created: now, LastSeen: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	reached := 0
	h := c.signedIn(func(w http.ResponseWriter, r *http.Request, rq *request) { reached++; w.WriteHeader(http.StatusOK) })
	get := func(cookie string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", Prefix+"repositories", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	clearsCookie := func(w *httptest.ResponseRecorder) bool {
		for _, ck := range w.Result().Cookies() {
			if ck.Name == sessionCookie && ck.MaxAge < 0 {
				return true
			}
		}
		return false
	}

	if w := get(id); w.Code != http.StatusOK || reached != 1 {
		t.Fatalf("signed-in page: %d (reached %d)", w.Code, reached)
	}
	for _, tc := range []struct {
		name   string
		err    error
		status int
	}{
		{"database unreachable", fmt.Errorf("read session: %w", &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}), http.StatusServiceUnavailable},
		{"other failure", errors.New("disk on fire"), http.StatusInternalServerError},
	} {
		sessions.fail = tc.err
		w := get(id)
		if w.Code != tc.status || clearsCookie(w) || reached != 1 {
			t.Errorf("%s: %d, cookie cleared %v, page reached %d times; want %d, the cookie kept", tc.name, w.Code, clearsCookie(w), reached, tc.status)
		}
		if tc.status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", tc.name)
		}
	}
	sessions.fail = nil
	if w := get(id); w.Code != http.StatusOK || reached != 2 {
		t.Fatalf("after the store came back: %d (reached %d)", w.Code, reached)
	}
	// An unknown session still signs the browser out.
	if w := get("not-a-session"); w.Code != http.StatusSeeOther || !clearsCookie(w) {
		t.Fatalf("unknown session: %d, cookie cleared %v", w.Code, clearsCookie(w))
	}
}
