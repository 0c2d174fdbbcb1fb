package seal

// The writer and the reader keep the caller's goroutine free for what it does with the
// plaintext (the registry hashes it). A writer's full batches go to two background stages,
// a sealer and a storer (which writes to the inner writer), so hashing, sealing and storage
// I/O of successive batches overlap; a reader that goes past its first batch starts a
// fetcher and an opener, which get the next batches ready while the caller consumes one.
// Both work in batch buffers of batchSegments stored segments from the driver's pool, and
// the channels between the stages are unbuffered, so a writer or a reader holds at most
// three buffers (3 MiB with the default segment size): the caller's, and one per stage.
// Objects that fit one batch (manifests, small uploads, small Range reads) never start a
// goroutine.

// batchSegments is how many segments the writer seals and writes to the inner driver at
// once, and a reader reads and opens at once (1 MiB with the default segment size).
const batchSegments = 16

// batchLen is the size of a batch buffer for segments of slot stored bytes: batchSegments
// slots and one byte more, which lets a reader tell whether a batch's last segment is the
// object's final one.
func batchLen(slot int) int { return batchSegments*slot + 1 }

// getBatch returns a batch buffer for segments of slot stored bytes, from the pool if it is
// the driver's own segment size.
func (d *Driver) getBatch(slot int) []byte {
	if slot == d.segmentSize+Overhead {
		if b, ok := d.batches.Get().(*[]byte); ok {
			return *b
		}
	}
	return make([]byte, batchLen(slot))
}

// putBatch returns a buffer from getBatch to the pool (others are left to the collector).
// The caller must hold no slice of it any more.
func (d *Driver) putBatch(b []byte) {
	if cap(b) == batchLen(d.segmentSize+Overhead) {
		b = b[:cap(b)]
		d.batches.Put(&b)
	}
}

// sealInPlace seals the plaintext at slot[NonceSize:NonceSize+n] where it lies: slot becomes
// nonce || ciphertext || tag (n+Overhead bytes; slot must have room for them).
func (c *objectCipher) sealInPlace(slot []byte, index uint64, kind byte, nonce []byte, n int) {
	copy(slot, nonce)
	pt := slot[NonceSize : NonceSize+n]
	c.aead.Seal(pt[:0], nonce, pt, c.setAAD(index, kind))
}
