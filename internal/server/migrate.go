package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"

	"github.com/cofferhq/coffer/internal/config"
)

// ComponentMigration is one part's schema in a MigrationReport.
type ComponentMigration struct {
	Component string `json:"component"`
	// Before and After are the steps applied before and after the run.
	Before int `json:"before"`
	After  int `json:"after"`
}

// MigrationReport is what Migrate did.
type MigrationReport struct {
	// Metadata is the database, without credentials.
	Metadata   string               `json:"metadata"`
	Components []ComponentMigration `json:"components"`
	// Applied is the number of steps this run applied.
	Applied int `json:"applied"`
}

// Migrate brings the metadata database cfg names up to this version's schema and
// initialises it as the first start of a server would (the administrator, the first
// signing and root keys), without serving: every part is built, under the same start lock
// as serve, then closed. Replicas started afterwards find nothing to do. It needs what
// serve needs (the vault root key, the blob store) and binds no public port: only a free
// port of 127.0.0.1, never served.
func Migrate(ctx context.Context, cfg config.Server, log *slog.Logger, out io.Writer) (MigrationReport, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Listen = "127.0.0.1:0"
	cfg.PlainHTTP = false
	var rep MigrationReport
	s, err := newServer(ctx, cfg, log, out, true)
	if err != nil {
		return rep, err
	}
	defer s.Close()
	rep.Metadata = s.db.Dialect().String() + " " + s.db.Where()
	after, err := s.db.MigrationState(ctx)
	if err != nil {
		return rep, err
	}
	for c, n := range after {
		b := s.migratedBefore[c]
		rep.Components = append(rep.Components, ComponentMigration{Component: c, Before: b, After: n})
		rep.Applied += n - b
	}
	sort.Slice(rep.Components, func(i, j int) bool { return rep.Components[i].Component < rep.Components[j].Component })
	if err := s.Close(); err != nil {
		return rep, fmt.Errorf("close: %w", err)
	}
	return rep, nil
}
