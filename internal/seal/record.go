package seal

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// SealRecord encrypts a small record that must live outside the blob store (for example an
// upload's saved hash state, which holds up to 63 bytes of the upload's plaintext) under
// the current root key, in the sealed object format (version 2) with one segment. label
// binds the record to its use and place (say "registry upload hash <id>"): it is the name
// the record is bound to, and is also kept in front of the plaintext, so records of
// version 1 are bound too. OpenRecord with another label fails.
func SealRecord(ctx context.Context, keys KeySource, label string, plaintext []byte) ([]byte, error) {
	gen, root, err := keys.CurrentKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("seal record: %w", err)
	}
	body := binary.AppendUvarint(nil, uint64(len(label)))
	body = append(body, label...)
	body = append(body, plaintext...)
	return SealNamed(rand.Reader, root, gen, max(len(body), 1), label, body)
}

// OpenRecord decrypts what SealRecord made with the same label.
func OpenRecord(ctx context.Context, keys KeySource, label string, sealed []byte) ([]byte, error) {
	body, err := OpenNamed(sealed, label, func(gen uint32) ([]byte, error) { return keys.Key(ctx, gen) })
	if err != nil {
		return nil, fmt.Errorf("open record: %w", err)
	}
	n, k := binary.Uvarint(body)
	if k <= 0 || n > uint64(len(body)-k) || string(body[k:k+int(n)]) != label {
		return nil, fmt.Errorf("open record: %w: the record belongs to another use", ErrAuth)
	}
	return body[k+int(n):], nil
}
