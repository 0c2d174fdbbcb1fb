package registry

import (
	"hash"
	"io"
	"sync"
)

// runningHashes keeps, in memory only, the SHA-256 of each upload's bytes so far. It is
// never written down: a hash state holds the last partial block of plaintext, and no
// plaintext may reach the disk outside the (sealing) blob driver. An upload resumed in
// another process (after a restart) has no running hash and is verified by reading its
// bytes back when it is closed.
type runningHashes struct {
	mu sync.Mutex
	m  map[string]runningHash
}

type runningHash struct {
	offset int64 // bytes hashed
	h      hash.Hash
}

func (r *runningHashes) put(id string, offset int64, h hash.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]runningHash{}
	}
	r.m[id] = runningHash{offset, h}
}

// take returns the running hash of id if it covers exactly offset bytes.
func (r *runningHashes) take(id string, offset int64) hash.Hash {
	r.mu.Lock()
	defer r.mu.Unlock()
	rh, ok := r.m[id]
	delete(r.m, id)
	if !ok || rh.offset != offset {
		return nil
	}
	return rh.h
}

func (r *runningHashes) drop(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, id)
}

// copyHashing copies r to w, feeding h (a hash or a digest verifier; may be nil) exactly
// the bytes w accepted.
func copyHashing(w io.Writer, h io.Writer, r io.Reader) (int64, error) {
	if r == nil {
		return 0, nil
	}
	buf := make([]byte, 256<<10)
	var total int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			wn, werr := w.Write(buf[:n])
			if h != nil {
				h.Write(buf[:wn])
			}
			total += int64(wn)
			if werr != nil {
				return total, werr
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}
