package identity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// LiveTTL bounds how long a principal found to exist is trusted without asking the store
// again. A deletion in this process takes effect at once (the entry is dropped); one made
// elsewhere (another replica, the database by hand) within LiveTTL.
const LiveTTL = 2 * time.Second

// maxLive bounds the cache of live principals; past it, it starts again empty.
const maxLive = 50_000

// Exists reports whether the principal with id still exists, so that tokens of a deleted
// principal are refused at once although they have not expired.
func (s *Service) Exists(ctx context.Context, id string) (bool, error) {
	now := s.now()
	s.liveMu.Lock()
	seen, ok := s.live[id]
	s.liveMu.Unlock()
	if ok && now.Sub(seen) < LiveTTL && !now.Before(seen) {
		return true, nil
	}
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM identity_principals WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up principal: %w", err)
	}
	s.liveMu.Lock()
	if len(s.live) >= maxLive {
		clear(s.live)
	}
	s.live[id] = now
	s.liveMu.Unlock()
	return true, nil
}

// forgetLive drops id from the cache of live principals (it was just deleted).
func (s *Service) forgetLive(id string) {
	s.liveMu.Lock()
	delete(s.live, id)
	s.liveMu.Unlock()
}
