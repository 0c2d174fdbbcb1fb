package registry

import "github.com/cofferhq/coffer/internal/blobstore"

// binder is implemented by writers of a driver that binds each object to the path it is
// read under (the sealing driver: see seal.Binder). The registry writes content at an
// upload path and moves it to its digest's path once verified; naming that path before
// Commit makes the move a rename, where the driver would otherwise re-seal a copy.
type binder interface {
	Bind(name string) error
}

// bindTo names the path the object being written by w will be moved to, when w's driver
// binds objects to names. Call it only once the content is known to be that path's (its
// digest verified).
func bindTo(w blobstore.Writer, path string) error {
	if b, ok := w.(binder); ok {
		return b.Bind(path)
	}
	return nil
}
