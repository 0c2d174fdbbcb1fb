package filesystem

import (
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// fsSyncer returns a syncfs(2) of the filesystem holding root, through a descriptor kept
// open for the driver's life: Linux reports a writeback error of that filesystem once to
// each descriptor that syncs it (since 5.8).
func fsSyncer(root string) (func() error, error) {
	f, err := os.Open(root)
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	return func() error {
		err := unix.Syncfs(fd)
		runtime.KeepAlive(f) // the descriptor stays open as long as this function lives
		if err != nil {
			return &os.PathError{Op: "syncfs", Path: root, Err: err}
		}
		return nil
	}, nil
}
