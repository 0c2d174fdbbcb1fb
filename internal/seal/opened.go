package seal

import "sync"

// openedObject is what opening a stored object once established: its header, its stored
// size, and that its final segment authenticates under name. A later read of the same
// path under the same name that finds the same stored size, and whose first segments
// authenticate under this header (their associated data binds it, and the data key follows
// from its object id), reads the same object: the final segment need not be fetched again,
// nor the header. Anything else (a replaced, truncated or extended object, on this replica
// or another) fails those checks and is opened afresh.
type openedObject struct {
	name       string
	h          Header
	sealedSize int64
}

// maxOpened bounds the objects remembered; beyond it an arbitrary one is forgotten.
const maxOpened = 4096

// openedCache remembers opened objects by path.
type openedCache struct {
	mu sync.Mutex
	m  map[string]openedObject
}

func (c *openedCache) get(path, name string) (openedObject, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[path]
	return e, ok && e.name == name
}

func (c *openedCache) put(path string, e openedObject) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]openedObject)
	}
	if _, ok := c.m[path]; !ok && len(c.m) >= maxOpened {
		for p := range c.m {
			delete(c.m, p)
			break
		}
	}
	c.m[path] = e
}

func (c *openedCache) drop(paths ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range paths {
		delete(c.m, p)
	}
}
