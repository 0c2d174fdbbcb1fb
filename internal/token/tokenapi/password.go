package tokenapi

import (
	"context"
	"net/http"
	"time"

	"github.com/cofferhq/coffer/internal/identity"
)

// CheckPassword checks a user name and password exactly as the password grant does, with
// the same throttling per address and per name (the same limiter): the web console's
// sign-in uses it, so a guesser gains nothing by switching endpoints. A wait > 0 means the
// attempt was refused without being checked.
func (a *API) CheckPassword(ctx context.Context, r *http.Request, username, password string) (identity.Principal, time.Duration, error) {
	p, wait, err := a.authenticate(ctx, r, username, password)
	if wait > 0 {
		return identity.Principal{}, wait, err
	}
	return p, 0, err
}
