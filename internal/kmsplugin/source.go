package kmsplugin

import "context"

// StaticSource is fixed settings (--key-id, --decrypt-key-id): no Coffer server needed.
type StaticSource struct{ S Settings }

func (s StaticSource) Settings(context.Context) (Settings, error) { return s.S, nil }
func (StaticSource) Report(context.Context, Report) error         { return nil }
