package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
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

	"github.com/cofferhq/coffer/internal/durable"
)

// signingKey is one ES256 key of the key set. The file <dir>/<kid>.json holds it (0600).
type signingKey struct {
	KID     string `json:"kid"`
	Alg     string `json:"alg"`
	Created int64  `json:"created"`
	// Retired is when the key stopped signing (0: it is the signing key). Its public key
	// stays published until every token it signed has expired.
	Retired    int64  `json:"retired,omitempty"`
	PrivateKey string `json:"privateKey"` // PKCS#8 PEM

	priv *ecdsa.PrivateKey
}

// KeySet holds the token signing keys in a directory and rotates them.
type KeySet struct {
	dir         string
	rotateAfter time.Duration
	// keepAfterRetire is how long a retired key's public key stays published: the longest
	// token lifetime plus the verification leeway.
	keepAfterRetire time.Duration
	now             func() time.Time

	mu   sync.RWMutex
	keys []*signingKey // newest first; keys[0] signs unless retired
}

// OpenKeySet loads (creating if needed) the key set in dir. A signing key older than
// rotateAfter is replaced by a new one; retired keys are dropped keepAfterRetire after
// they stopped signing.
func OpenKeySet(dir string, rotateAfter, keepAfterRetire time.Duration, now func() time.Time) (*KeySet, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create signing key directory: %w", err)
	}
	ks := &KeySet{dir: dir, rotateAfter: rotateAfter, keepAfterRetire: keepAfterRetire, now: now}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read signing keys: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		k, err := loadKey(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ks.keys = append(ks.keys, k)
	}
	ks.sort()
	if _, err := ks.signer(); err != nil {
		return nil, err
	}
	return ks, nil
}

func loadKey(path string) (*signingKey, error) {
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
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("signing key %s is not a P-256 key", path)
	}
	k.priv = ec
	return &k, nil
}

func (ks *KeySet) sort() {
	sort.Slice(ks.keys, func(i, j int) bool {
		if ks.keys[i].Created != ks.keys[j].Created {
			return ks.keys[i].Created > ks.keys[j].Created
		}
		return ks.keys[i].KID > ks.keys[j].KID
	})
}

// signer returns the current signing key, rotating and pruning as due.
func (ks *KeySet) signer() (*signingKey, error) {
	now := ks.now()
	ks.mu.RLock()
	cur, due := ks.stateLocked(now)
	ks.mu.RUnlock()
	if !due {
		return cur, nil
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if err := ks.pruneLocked(now); err != nil {
		return nil, err
	}
	cur, _ = ks.stateLocked(now)
	if cur != nil && (ks.rotateAfter <= 0 || now.Sub(time.Unix(cur.Created, 0)) < ks.rotateAfter) {
		return cur, nil
	}
	return ks.rotateLocked(now)
}

// stateLocked returns the signing key and whether a rotation or a prune is due.
func (ks *KeySet) stateLocked(now time.Time) (*signingKey, bool) {
	var cur *signingKey
	if len(ks.keys) > 0 && ks.keys[0].Retired == 0 {
		cur = ks.keys[0]
	}
	due := cur == nil || (ks.rotateAfter > 0 && now.Sub(time.Unix(cur.Created, 0)) >= ks.rotateAfter)
	for _, k := range ks.keys {
		due = due || ks.expired(k, now)
	}
	return cur, due
}

func (ks *KeySet) expired(k *signingKey, now time.Time) bool {
	return k.Retired != 0 && now.Sub(time.Unix(k.Retired, 0)) > ks.keepAfterRetire
}

// pruneLocked drops retired keys whose tokens have all expired.
func (ks *KeySet) pruneLocked(now time.Time) error {
	kept := ks.keys[:0]
	for _, k := range ks.keys {
		if ks.expired(k, now) {
			if err := os.Remove(filepath.Join(ks.dir, k.KID+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove expired signing key: %w", err)
			}
			continue
		}
		kept = append(kept, k)
	}
	ks.keys = kept
	return nil
}

// Rotate makes a new signing key now (the old one keeps verifying until its tokens expire).
func (ks *KeySet) Rotate() error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	_, err := ks.rotateLocked(ks.now())
	return err
}

func (ks *KeySet) rotateLocked(now time.Time) (*signingKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	k := &signingKey{KID: thumbprint(&priv.PublicKey), Alg: "ES256", Created: now.Unix(), priv: priv,
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}
	if err := ks.write(k); err != nil {
		return nil, err
	}
	for _, old := range ks.keys {
		if old.Retired == 0 {
			old.Retired = now.Unix()
			if err := ks.write(old); err != nil {
				return nil, err
			}
		}
	}
	ks.keys = append([]*signingKey{k}, ks.keys...)
	return k, ks.pruneLocked(now)
}

func (ks *KeySet) write(k *signingKey) error {
	raw, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(ks.dir, k.KID+".json"), raw, 0o600); err != nil {
		return fmt.Errorf("write signing key: %w", err)
	}
	return nil
}

// publicKey returns the public key for kid if it is still published.
func (ks *KeySet) publicKey(kid string) (*ecdsa.PublicKey, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	now := ks.now()
	for _, k := range ks.keys {
		if k.KID == kid {
			if ks.expired(k, now) {
				return nil, false
			}
			return &k.priv.PublicKey, true
		}
	}
	return nil, false
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
func (ks *KeySet) Public() JWKS {
	ks.signer() // rotate if due, so the set never lacks the current key
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
