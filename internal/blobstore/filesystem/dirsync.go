package filesystem

import (
	"sync"

	"github.com/cofferhq/coffer/internal/durable"
)

// dirSyncer group-commits directory fsyncs: concurrent commits into the same directory
// (every upload lands in data/uploads/ first) share one fsync instead of paying one each.
// A caller's rename happened before it asks, and it is answered only by an fsync that began
// after it asked, so each rename is on disk when its caller returns, exactly as with an
// fsync of its own.
type dirSyncer struct {
	syncDir func(dir string) error // durable.SyncDir; tests count calls

	mu   sync.Mutex
	dirs map[string]*dirQueue
}

// dirQueue holds the callers waiting for the next fsync of one directory.
type dirQueue struct {
	running bool
	waiting []chan error
}

func newDirSyncer() *dirSyncer {
	return &dirSyncer{syncDir: durable.SyncDir, dirs: map[string]*dirQueue{}}
}

// sync returns once an fsync of dir that began after the call has finished, with its error.
func (s *dirSyncer) sync(dir string) error {
	done := make(chan error, 1)
	s.mu.Lock()
	q := s.dirs[dir]
	if q == nil {
		q = &dirQueue{}
		s.dirs[dir] = q
	}
	q.waiting = append(q.waiting, done)
	if !q.running {
		q.running = true
		go s.run(dir, q)
	}
	s.mu.Unlock()
	return <-done
}

// run fsyncs dir for each batch of waiters until none is left.
func (s *dirSyncer) run(dir string, q *dirQueue) {
	for {
		s.mu.Lock()
		batch := q.waiting
		q.waiting = nil
		if len(batch) == 0 {
			q.running = false
			delete(s.dirs, dir)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		err := s.syncDir(dir)
		for _, c := range batch {
			c <- err
		}
	}
}
