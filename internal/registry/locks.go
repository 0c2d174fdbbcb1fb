package registry

import (
	"context"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"
)

// lockDigest takes d's lock: between placing d's bytes and the garbage collector
// removing them, on every replica when Options.Lock is set.
func (s *Service) lockDigest(ctx context.Context, d digest.Digest) (unlock func(), err error) {
	if s.opts.Lock == nil {
		return s.digestLocks.lock(string(d)), nil
	}
	unlock, err = s.opts.Lock(ctx, "registry/digest/"+string(d))
	if err != nil {
		return nil, asRegistryError(fmt.Errorf("lock blob %s: %w", d, err))
	}
	return unlock, nil
}

// keyedMutex is a set of mutexes by key, created on demand and dropped when unused.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*refMutex
}

type refMutex struct {
	sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*refMutex{}
	}
	m := k.locks[key]
	if m == nil {
		m = &refMutex{}
		k.locks[key] = m
	}
	m.refs++
	k.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		k.mu.Lock()
		if m.refs--; m.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
