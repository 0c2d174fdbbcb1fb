package console

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clocktest"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestSessionExpiry: a session ends after Idle without use and after Absolute however
// active; an ended session is deleted from the store, and the sweep removes stale ones.
func TestSessionExpiry(t *testing.T) {
	ctx := context.Background()
	sessions, err := OpenSQLSessions(ctx, storetest.SQLite(t))
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
