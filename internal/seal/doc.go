// Package seal is Coffer's encryption at rest for the registry: every object the registry
// stores (blobs, manifests, uploads in progress) goes through a sealing blobstore.Driver
// that encrypts it before the storage driver sees a byte, and decrypts it on the way back.
//
// The format (docs/seal-format.md, with test vectors) is a 48-byte clear-text header —
// magic, version, root-key generation, segment size, a random object id — followed by the
// object in 64 KiB segments, each sealed with AES-256-GCM under a data key that HKDF-SHA256
// derives from the root key with the object id as salt. Every segment's associated data
// binds the header, its index and a final-segment flag, so truncation, reordering,
// splicing between objects, bit flips and a wrong key all fail authentication (ErrAuth).
// Segments have a fixed stored size, so a read at any offset seeks straight to the segment
// holding it and decrypts only what it returns, and the plaintext size follows from the
// stored size without decrypting anything.
//
// Uploads span requests: full segments go to storage as they fill; the partial last one is
// sealed, with a fresh nonce, into a companion tail object on Close and restored by
// ResumeWriter.
//
// Keys come from a KeySource; the key hierarchy behind it (root keys wrapped by a key in a
// vault, re-validated on an interval, rotated by re-wrapping) is package seal/keyring.
package seal
