package seal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cofferhq/coffer/internal/blobstore"
)

// Resume state: an unfinished upload's partial last segment, sealed under a fresh nonce
// into a companion object beside it between Close and ResumeWriter.

// TailSuffix names the companion object that holds an unfinished upload's last partial
// segment between Close and ResumeWriter. Paths ending in it are reserved.
const TailSuffix = ".sealtail"

// maxTailRecord bounds how much of a tail object is read.
const maxTailRecord = HeaderSize + 8 + Overhead + MaxSegmentSize

func (d *Driver) readTail(ctx context.Context, path string) (Header, *objectCipher, uint64, []byte, error) {
	fail := func(err error) (Header, *objectCipher, uint64, []byte, error) {
		return Header{}, nil, 0, nil, err
	}
	r, err := d.raw.Reader(ctx, path+TailSuffix, 0)
	if errors.Is(err, blobstore.ErrNotFound) {
		return fail(fmt.Errorf("seal %s: the unfinished upload's resume state is missing; restart the upload", path))
	}
	if err != nil {
		return fail(fmt.Errorf("seal %s: read resume state: %w", path, err))
	}
	rec, err := io.ReadAll(io.LimitReader(r, maxTailRecord+1))
	r.Close()
	if err != nil {
		return fail(fmt.Errorf("seal %s: read resume state: %w", path, err))
	}
	h, index, tail, c, err := d.openTail(ctx, rec)
	if err != nil {
		return fail(fmt.Errorf("seal %s: resume state: %w", path, err))
	}
	return h, c, index, tail, nil
}

// openTail decodes a tail record: header || uint64 segments written || nonce || sealed tail.
func (d *Driver) openTail(ctx context.Context, rec []byte) (Header, uint64, []byte, *objectCipher, error) {
	var zero Header
	if len(rec) > maxTailRecord || len(rec) < HeaderSize+8+Overhead {
		return zero, 0, nil, nil, fmt.Errorf("%w: tail record of %d bytes", ErrFormat, len(rec))
	}
	h, err := ParseHeader(rec)
	if err != nil {
		return zero, 0, nil, nil, err
	}
	index := binary.BigEndian.Uint64(rec[HeaderSize:])
	root, err := d.keys.Key(ctx, h.Generation)
	if err != nil {
		return zero, 0, nil, nil, err
	}
	c, err := newObjectCipher(root, h)
	if err != nil {
		return zero, 0, nil, nil, err
	}
	tail, err := c.openSegment(nil, index, kindTail, rec[HeaderSize+8:])
	if err != nil {
		return zero, 0, nil, nil, err
	}
	if len(tail) >= int(h.SegmentSize) {
		return zero, 0, nil, nil, fmt.Errorf("%w: tail of %d bytes is not shorter than a segment", ErrFormat, len(tail))
	}
	return h, index, tail, c, nil
}
