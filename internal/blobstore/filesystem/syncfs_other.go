//go:build !linux

package filesystem

// fsSyncer: no syncfs here; the committer flushes each file and directory instead.
func fsSyncer(root string) (func() error, error) { return nil, nil }
