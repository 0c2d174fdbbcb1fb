package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// signingKey is one ES256 key of the key set: a row of token_signing_keys, its private
// key sealed under the vault root key (Sealer).
type signingKey struct {
	KID     string `json:"kid"`
	Alg     string `json:"alg"`
	Created int64  `json:"created"`
	// Retired is when the key stopped signing (0: it is the signing key). Its public key
	// stays published until every token it signed has expired.
	Retired int64 `json:"retired,omitempty"`
	// PrivateKey is the PKCS#8 PEM of a key file of earlier versions (imported once).
	PrivateKey string `json:"privateKey,omitempty"`

	priv *ecdsa.PrivateKey
}

// KeySet holds the token signing keys in the metadata database, shared by every replica on
// it, and rotates them: whichever replica finds a rotation due makes it (in one
// transaction, so two replicas finding it due at once make one key), and the others read
// it on their next reload.
type KeySet struct {
	db          *store.DB
	sealer      *Sealer
	rotateAfter time.Duration
	// keepAfterRetire is how long a retired key's public key stays published: the longest
	// token lifetime plus the verification leeway.
	keepAfterRetire time.Duration
	now             func() time.Time

	mu   sync.RWMutex
	keys []*signingKey // the signing key first, then newest first (sortKeys)
	// loaded is when keys were last read from the database (the clock now); missed is when
	// an unknown kid last made a reload (wall time: a bound on reloads, not a validity).
	loaded time.Time
	missed time.Time
}

// KeySetOptions configure OpenKeySet.
type KeySetOptions struct {
	DB *store.DB
	// Sealer seals the private keys (and the secrets of Secret) under the vault root key.
	Sealer *Sealer
	// ImportDir, if set, is the key directory of earlier versions (<kid>.json files): its
	// keys are moved into the database once and its files removed.
	ImportDir string
	// RotateAfter is the signing key's age at which a new one replaces it (0: never).
	RotateAfter time.Duration
	// KeepAfterRetire is how long a retired key keeps verifying.
	KeepAfterRetire time.Duration
	Now             func() time.Time
}

// reloadEvery is how often a replica re-reads the key set (a rotation made by another
// replica is followed within it); a token signed by a kid this replica does not know
// reloads at once (at most once a second).
const reloadEvery = 10 * time.Second

var keyMigrations = []string{
	`CREATE TABLE token_signing_keys (
		kid TEXT PRIMARY KEY,
		created INTEGER NOT NULL,
		retired INTEGER NOT NULL,
		sealed BLOB NOT NULL
	);
	CREATE TABLE token_secrets (
		name TEXT PRIMARY KEY,
		sealed BLOB NOT NULL,
		created INTEGER NOT NULL
	)`,
}

// OpenKeySet opens the key set in the database, importing the files of ImportDir once
// and making the first signing key if there is none (once, however many replicas start
// together).
func OpenKeySet(ctx context.Context, o KeySetOptions) (*KeySet, error) {
	if o.DB == nil || o.Sealer == nil {
		return nil, errors.New("token key set: DB and Sealer are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := o.DB.Migrate(ctx, "token", keyMigrations); err != nil {
		return nil, err
	}
	ks := &KeySet{db: o.DB, sealer: o.Sealer, rotateAfter: o.RotateAfter, keepAfterRetire: o.KeepAfterRetire, now: o.Now}
	if o.ImportDir != "" {
		if err := ks.importDir(ctx, o.ImportDir); err != nil {
			return nil, err
		}
	}
	if _, err := ks.signer(ctx); err != nil {
		return nil, err
	}
	return ks, nil
}

// importDir moves the key files of an earlier version into the database and removes them.
// A key file that is still signing becomes a retired key if the database has keys already
// (another replica's): one signing key for all.
func (ks *KeySet) importDir(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the signing key files to import: %w", err)
	}
	var files []string
	var keys []*signingKey
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		k, err := loadKeyFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		files = append(files, filepath.Join(dir, e.Name()))
		keys = append(keys, k)
	}
	if len(keys) > 0 {
		now := ks.now().Unix()
		err := ks.db.InTx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM token_signing_keys`).Scan(&n); err != nil {
				return err
			}
			for _, k := range keys {
				retired := k.Retired
				if n > 0 && retired == 0 {
					retired = now
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO token_signing_keys (kid, created, retired, sealed) VALUES (?, ?, ?, ?)
					ON CONFLICT (kid) DO NOTHING`, k.KID, k.Created, retired, ks.sealKey(k)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("import the signing key files of %s: %w", dir, err)
		}
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			return fmt.Errorf("remove an imported signing key file: %w", err)
		}
	}
	os.Remove(dir) // if empty
	return nil
}

func loadKeyFile(path string) (*signingKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	var k signingKey
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, fmt.Errorf("signing key %s is corrupt: %w", path, err)
	}
	block, _ := pem.Decode([]byte(k.PrivateKey))
	if block == nil {
		return nil, fmt.Errorf("signing key %s holds no PEM key", path)
	}
	if k.priv, err = parseKey(block.Bytes); err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	if k.KID != thumbprint(&k.priv.PublicKey) {
		return nil, fmt.Errorf("signing key %s: its kid is not its key's thumbprint", path)
	}
	return &k, nil
}

func parseKey(der []byte) (*ecdsa.PrivateKey, error) {
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("not a P-256 key")
	}
	return ec, nil
}

func (ks *KeySet) sealKey(k *signingKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	defer clear(der)
	return ks.sealer.seal(der, "token-signing-key/"+k.KID)
}

// reload reads the key set from the database.
func (ks *KeySet) reload(ctx context.Context) error {
	rows, err := ks.db.QueryContext(ctx, `SELECT kid, created, retired, sealed FROM token_signing_keys`)
	if err != nil {
		return fmt.Errorf("read the token signing keys: %w", err)
	}
	defer rows.Close()
	var keys []*signingKey
	for rows.Next() {
		k := &signingKey{Alg: "ES256"}
		var sealed []byte
		if err := rows.Scan(&k.KID, &k.Created, &k.Retired, &sealed); err != nil {
			return fmt.Errorf("read the token signing keys: %w", err)
		}
		der, err := ks.sealer.open(sealed, "token-signing-key/"+k.KID)
		if err != nil {
			return fmt.Errorf("token signing key %s: %w", k.KID, err)
		}
		k.priv, err = parseKey(der)
		clear(der)
		if err != nil {
			return fmt.Errorf("token signing key %s: %w", k.KID, err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the token signing keys: %w", err)
	}
	sortKeys(keys)
	ks.mu.Lock()
	ks.keys, ks.loaded = keys, ks.now()
	ks.mu.Unlock()
	return nil
}

// sortKeys puts the signing key (the one not retired) first, then the newest: a key made
// in the same second as the one it retired still comes first.
func sortKeys(keys []*signingKey) {
	sort.Slice(keys, func(i, j int) bool {
		if (keys[i].Retired == 0) != (keys[j].Retired == 0) {
			return keys[i].Retired == 0
		}
		if keys[i].Created != keys[j].Created {
			return keys[i].Created > keys[j].Created
		}
		return keys[i].KID > keys[j].KID
	})
}

// signer returns the current signing key, re-reading the set when it is due and rotating
// and pruning as due. A database that cannot be read leaves the key it had signing, as
// long as that one is not due for rotation.
func (ks *KeySet) signer(ctx context.Context) (*signingKey, error) {
	now := ks.now()
	ks.mu.RLock()
	cur, due := ks.stateLocked(now)
	stale := ks.loaded.IsZero() || now.Sub(ks.loaded) >= reloadEvery || now.Before(ks.loaded)
	ks.mu.RUnlock()
	if !due && !stale {
		return cur, nil
	}
	if err := ks.reload(ctx); err != nil {
		if cur != nil && !due {
			return cur, nil
		}
		return nil, err
	}
	ks.mu.RLock()
	cur, due = ks.stateLocked(now)
	ks.mu.RUnlock()
	if !due {
		return cur, nil
	}
	if err := ks.rotate(ctx, now, false); err != nil {
		return nil, err
	}
	ks.mu.RLock()
	cur, _ = ks.stateLocked(now)
	ks.mu.RUnlock()
	if cur == nil {
		return nil, errors.New("token signing key: none after rotation")
	}
	return cur, nil
}

// stateLocked returns the signing key and whether a rotation or a prune is due.
func (ks *KeySet) stateLocked(now time.Time) (*signingKey, bool) {
	var cur *signingKey
	if len(ks.keys) > 0 && ks.keys[0].Retired == 0 {
		cur = ks.keys[0]
	}
	due := cur == nil || ks.rotationDue(cur.Created, now)
	for _, k := range ks.keys {
		due = due || ks.expired(k, now)
	}
	return cur, due
}

func (ks *KeySet) rotationDue(created int64, now time.Time) bool {
	return ks.rotateAfter > 0 && now.Sub(time.Unix(created, 0)) >= ks.rotateAfter
}

func (ks *KeySet) expired(k *signingKey, now time.Time) bool {
	return k.Retired != 0 && now.Sub(time.Unix(k.Retired, 0)) > ks.keepAfterRetire
}

// Rotate makes a new signing key now (the old one keeps verifying until its tokens expire).
func (ks *KeySet) Rotate(ctx context.Context) error {
	return ks.rotate(ctx, ks.now(), true)
}

// rotate, in one transaction: drops retired keys whose tokens have all expired and, if
// forced or still due as the database says (another replica may have just rotated), makes
// a new signing key and retires the others.
func (ks *KeySet) rotate(ctx context.Context, now time.Time, force bool) error {
	err := ks.db.InTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT kid, created, retired FROM token_signing_keys`)
		if err != nil {
			return err
		}
		var keys []*signingKey
		for rows.Next() {
			k := &signingKey{}
			if err := rows.Scan(&k.KID, &k.Created, &k.Retired); err != nil {
				rows.Close()
				return err
			}
			keys = append(keys, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		sortKeys(keys)
		for _, k := range keys {
			if ks.expired(k, now) {
				if _, err := tx.ExecContext(ctx, `DELETE FROM token_signing_keys WHERE kid = ?`, k.KID); err != nil {
					return err
				}
			}
		}
		need := force || len(keys) == 0 || keys[0].Retired != 0 || ks.rotationDue(keys[0].Created, now)
		if !need {
			return nil
		}
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fmt.Errorf("generate signing key: %w", err)
		}
		k := &signingKey{KID: thumbprint(&priv.PublicKey), Created: now.Unix(), priv: priv}
		if _, err := tx.ExecContext(ctx, `UPDATE token_signing_keys SET retired = ? WHERE retired = 0`, now.Unix()); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO token_signing_keys (kid, created, retired, sealed) VALUES (?, ?, 0, ?)`,
			k.KID, k.Created, ks.sealKey(k))
		return err
	})
	if err != nil {
		return fmt.Errorf("rotate the token signing key: %w", err)
	}
	return ks.reload(ctx)
}

// publicKey returns the public key for kid if it is still published. A kid this replica
// does not know (another replica's new key) re-reads the set, at most once a second.
func (ks *KeySet) publicKey(ctx context.Context, kid string) (*ecdsa.PublicKey, bool) {
	if pub, ok, known := ks.lookup(kid); known {
		return pub, ok
	}
	ks.mu.Lock()
	retry := time.Since(ks.missed) >= time.Second
	if retry {
		ks.missed = time.Now()
	}
	ks.mu.Unlock()
	if !retry || ks.reload(ctx) != nil {
		return nil, false
	}
	pub, ok, _ := ks.lookup(kid)
	return pub, ok
}

func (ks *KeySet) lookup(kid string) (pub *ecdsa.PublicKey, ok, known bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	now := ks.now()
	for _, k := range ks.keys {
		if k.KID == kid {
			if ks.expired(k, now) {
				return nil, false, true
			}
			return &k.priv.PublicKey, true, true
		}
	}
	return nil, false, false
}

// Secret returns the secret called name, shared by every replica: read from the
// database, or made once (the value of the file legacy, if that exists, else 32 random
// bytes in base64url), whichever replica comes first.
func (ks *KeySet) Secret(ctx context.Context, name, legacy string) (string, error) {
	read := func() (string, bool, error) {
		var sealed []byte
		err := ks.db.QueryRowContext(ctx, `SELECT sealed FROM token_secrets WHERE name = ?`, name).Scan(&sealed)
		if errors.Is(err, sql.ErrNoRows) {
			return "", false, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("read the secret %s: %w", name, err)
		}
		v, err := ks.sealer.open(sealed, "secret/"+name)
		if err != nil {
			return "", false, fmt.Errorf("secret %s: %w", name, err)
		}
		return string(v), true, nil
	}
	if v, ok, err := read(); ok || err != nil {
		return v, err
	}
	var v string
	if legacy != "" {
		raw, err := os.ReadFile(legacy)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		v = strings.TrimSpace(string(raw))
	}
	if v == "" {
		buf := make([]byte, 32)
		rand.Read(buf)
		v = base64.RawURLEncoding.EncodeToString(buf)
	}
	if _, err := ks.db.ExecContext(ctx, `INSERT INTO token_secrets (name, sealed, created) VALUES (?, ?, ?)
		ON CONFLICT (name) DO NOTHING`, name, ks.sealer.seal([]byte(v), "secret/"+name), ks.now().Unix()); err != nil {
		return "", fmt.Errorf("store the secret %s: %w", name, err)
	}
	v, _, err := read() // the first replica's, if another came first
	return v, err
}

// JWK is one public key in a JWKS.
type JWK struct {
	KTY string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	KID string `json:"kid"`
	CRV string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// JWKS is the published key set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// Public returns the published public keys (the signing key and retired keys whose tokens
// may still be valid).
func (ks *KeySet) Public(ctx context.Context) JWKS {
	ks.signer(ctx) // reload, rotate if due, so the set never lacks the current key
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	now := ks.now()
	out := JWKS{Keys: []JWK{}}
	for _, k := range ks.keys {
		if ks.expired(k, now) {
			continue
		}
		pub := &k.priv.PublicKey
		out.Keys = append(out.Keys, JWK{KTY: "EC", Use: "sig", Alg: "ES256", KID: k.KID, CRV: "P-256",
			X: b64(pad32(pub.X)), Y: b64(pad32(pub.Y))})
	}
	return out
}

func pad32(n *big.Int) []byte {
	b := make([]byte, 32)
	return n.FillBytes(b)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// thumbprint is the RFC 7638 JWK thumbprint of an EC P-256 public key, used as kid.
func thumbprint(pub *ecdsa.PublicKey) string {
	canon := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, b64(pad32(pub.X)), b64(pad32(pub.Y)))
	sum := sha256.Sum256([]byte(canon))
	return b64(sum[:])
}
