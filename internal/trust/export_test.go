package trust

import (
	"context"

	"github.com/cofferhq/coffer/internal/store"
)

// OpenStore opens the trust part's SQL store on db, for its storage suite.
func OpenStore(ctx context.Context, db *store.DB) (Store, error) { return newSQLStore(ctx, db) }
