package kektest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/cofferhq/coffer/internal/kek"
)

// Memory is an in-memory key vault with RSA keys, for tests of code that uses a KEK (the
// key hierarchy) where no vault is wanted. It keeps Azure Key Vault's semantics that matter
// to callers: versions, versionless ids resolving to the newest version, per-operation
// permissions, disabled and deleted keys, and it counts calls. It passes Run itself.
type Memory struct {
	vault string

	mu        sync.Mutex
	keys      map[string]*memKey
	denied    map[string]bool // op ("get", "wrapKey", "unwrapKey") → denied for everyone
	netDenied bool
	calls     map[string]int
}

type memKey struct {
	versions []*memVersion
	deleted  bool
}

type memVersion struct {
	id      string
	kty     string
	priv    *rsa.PrivateKey
	enabled bool
}

// NewMemory returns an empty in-memory vault answering at vaultURL (https://HOST).
func NewMemory(vaultURL string) *Memory {
	return &Memory{vault: vaultURL, keys: map[string]*memKey{}, denied: map[string]bool{}, calls: map[string]int{}}
}

// CreateKey adds a version to key name (creating it) and returns its versioned id. kty is
// RSA, RSA-HSM, EC or oct; only RSA keys can wrap.
func (m *Memory) CreateKey(name, kty string) (string, error) {
	v := &memVersion{kty: kty, enabled: true}
	if kty == "RSA" || kty == "RSA-HSM" {
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return "", err
		}
		v.priv = priv
	}
	idb := make([]byte, 16)
	rand.Read(idb)
	v.id = hex.EncodeToString(idb)
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.keys[name]
	if k == nil {
		k = &memKey{}
		m.keys[name] = k
	}
	k.versions = append(k.versions, v)
	return m.vault + "/keys/" + name + "/" + v.id, nil
}

// Deny refuses op (get, wrapKey, unwrapKey) to every caller; Allow restores it.
func (m *Memory) Deny(ops ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, op := range ops {
		m.denied[op] = true
	}
}

// Allow undoes Deny.
func (m *Memory) Allow(ops ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, op := range ops {
		delete(m.denied, op)
	}
}

// SetNetworkDenied makes the vault refuse every call as its firewall would.
func (m *Memory) SetNetworkDenied(denied bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.netDenied = denied
}

// SetEnabled enables or disables every version of key name.
func (m *Memory) SetEnabled(name string, enabled bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k := m.keys[name]; k != nil {
		for _, v := range k.versions {
			v.enabled = enabled
		}
	}
}

// SetDeleted soft-deletes (true) or recovers (false) key name.
func (m *Memory) SetDeleted(name string, deleted bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k := m.keys[name]; k != nil {
		k.deleted = deleted
	}
}

// Calls is the number of calls of op so far ("" for all operations).
func (m *Memory) Calls(op string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if op != "" {
		return m.calls[op]
	}
	n := 0
	for _, c := range m.calls {
		n += c
	}
	return n
}

func (m *Memory) find(op, keyID string) (kek.KeyID, *memVersion, error) {
	m.calls[op]++
	fail := func(kind error, detail string) (kek.KeyID, *memVersion, error) {
		return kek.KeyID{}, nil, &kek.Error{Op: op, KeyID: keyID, Kind: kind, Detail: detail}
	}
	id, err := kek.ParseKeyID(keyID)
	if err != nil {
		return kek.KeyID{}, nil, err
	}
	if id.Vault != m.vault {
		return fail(kek.ErrUnavailable, "no such vault")
	}
	if m.netDenied {
		return fail(kek.ErrNetworkDenied, "the vault's firewall does not allow the caller")
	}
	if m.denied[op] {
		return fail(kek.ErrForbidden, "the caller does not have "+op+" permission on key "+id.Name)
	}
	k := m.keys[id.Name]
	if k == nil || k.deleted {
		return fail(kek.ErrNotFound, "a key with name "+id.Name+" was not found")
	}
	v := k.versions[len(k.versions)-1]
	if id.Version != "" {
		v = nil
		for _, x := range k.versions {
			if x.id == id.Version {
				v = x
			}
		}
		if v == nil {
			return fail(kek.ErrNotFound, "version "+id.Version+" of key "+id.Name+" was not found")
		}
	}
	if !v.enabled && op != "get" {
		return fail(kek.ErrDisabled, "operation "+op+" is not allowed on a disabled key")
	}
	id.Version = v.id
	return id, v, nil
}

func (m *Memory) GetKey(ctx context.Context, keyID string) (kek.KeyInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, v, err := m.find("get", keyID)
	if err != nil {
		return kek.KeyInfo{}, err
	}
	ops := []string{"sign", "verify"}
	if v.priv != nil {
		ops = []string{"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"}
	}
	return kek.KeyInfo{KID: id.String(), Type: v.kty, Enabled: v.enabled, Ops: ops}, nil
}

func (m *Memory) WrapKey(ctx context.Context, keyID string, secret []byte) (string, []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, v, err := m.find("wrapKey", keyID)
	if err != nil {
		return "", nil, err
	}
	if v.priv == nil {
		return "", nil, &kek.Error{Op: "wrapKey", KeyID: keyID, Kind: kek.ErrUnsupportedKeyType, Detail: v.kty + " keys cannot wrap"}
	}
	out, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &v.priv.PublicKey, secret, nil)
	if err != nil {
		return "", nil, fmt.Errorf("wrap: %w", err)
	}
	return id.String(), out, nil
}

func (m *Memory) UnwrapKey(ctx context.Context, kid string, wrapped []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, v, err := m.find("unwrapKey", kid)
	if err != nil {
		return nil, err
	}
	if v.priv == nil {
		return nil, &kek.Error{Op: "unwrapKey", KeyID: kid, Kind: kek.ErrUnsupportedKeyType, Detail: v.kty + " keys cannot unwrap"}
	}
	out, err := rsa.DecryptOAEP(sha256.New(), nil, v.priv, wrapped, nil)
	if err != nil {
		return nil, &kek.Error{Op: "unwrapKey", KeyID: kid, Kind: kek.ErrInvalid, Detail: "the wrapped key does not decrypt under this key"}
	}
	return out, nil
}

var _ kek.KEK = (*Memory)(nil)
