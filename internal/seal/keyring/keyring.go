// Package keyring is the registry's key hierarchy for encryption at rest:
//
//	KEK (RSA key in a vault: platform-managed or customer-managed)
//	 └─ wraps (RSA-OAEP-256) the registry root key: 256-bit random, one per generation
//	     └─ derives (HKDF-SHA256, per object) the data keys of package seal
//
// Root keys are stored only wrapped, in the metadata store. A Keyring unwraps them once and
// keeps them in memory; it is a seal.KeySource, so reads and writes never call the vault.
// Every access check interval it unwraps them again: if the vault refuses (permission
// revoked, key disabled or deleted, network rule), the keyring drops the root keys and every
// read and write fails with an *AccessError naming the cause, until a later check succeeds,
// with no restart. Rotating the KEK re-wraps the root keys (one wrap per generation,
// whatever the amount of data stored); a versionless key id turns on automatic rotation to
// the key's newest version. See docs/encryption.md.
package keyring

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/seal"
	"github.com/cofferhq/coffer/internal/store"
)

// Key sources.
const (
	SourcePlatform = "platform" // a key Coffer created in its own vault
	SourceCustomer = "customer" // a customer-managed key
)

// SystemIdentity names the registry's system-assigned identity.
const SystemIdentity = "[system]"

// Errors.
var (
	ErrNotInitialized = errors.New("registry encryption is not initialized")
	ErrAlreadyEnabled = errors.New("customer-managed key encryption is already enabled on this registry; use `coffer registry encryption rotate-key` to change the key or the identity")
	ErrCannotDisable  = errors.New("customer-managed key encryption cannot be disabled once enabled; to stop using a key, rotate to another one with `coffer registry encryption rotate-key`")
	ErrIdentityInUse  = errors.New("identity is used by the registry's encryption at rest")
)

// Resolver gives the KEK driver that reaches keyID as identity (SystemIdentity or a
// managed identity's id).
type Resolver interface {
	KEK(ctx context.Context, identity, keyID string) (kek.KEK, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, identity, keyID string) (kek.KEK, error)

// KEK calls f.
func (f ResolverFunc) KEK(ctx context.Context, identity, keyID string) (kek.KEK, error) {
	return f(ctx, identity, keyID)
}

// Options configure a Keyring.
type Options struct {
	DB       *store.DB
	Resolver Resolver
	// AccessCheckInterval: how often the root keys are unwrapped again (default 60s).
	AccessCheckInterval time.Duration
	// RotationCheckInterval: how often a versionless key is checked for a newer version
	// (default 1h).
	RotationCheckInterval time.Duration
	// CheckTimeout bounds one vault check (default 10s): reads and writes that find the
	// last check too old wait for the next one, so it must stay short.
	CheckTimeout time.Duration
	Log          *slog.Logger
	Now          func() time.Time
	// Checked, if set, is told the result of every access check against the vault (nil:
	// the root keys unwrapped), for metrics. It is called with the check lock held: it
	// must not call back into the keyring.
	Checked func(cause error)
}

// Settings are the registry's encryption settings.
type Settings struct {
	Source string
	// KeyID is the key id as configured: versionless means automatic rotation.
	KeyID string
	// VersionedKeyID is the key version the root keys are wrapped under now.
	VersionedKeyID  string
	Identity        string
	RotationEnabled bool
	LastRotation    time.Time
	// Generation is the root-key generation new objects are sealed under.
	Generation uint32
}

// AccessError is returned for every read and write while the KEK cannot be used.
type AccessError struct {
	KeyID    string
	Identity string
	Since    time.Time
	Cause    error
	Interval time.Duration
}

func (e *AccessError) Error() string {
	return fmt.Sprintf("registry content is encrypted under key %s, which the registry cannot use as identity %s (since %s): %v; "+
		"restore the identity's get, wrapKey and unwrapKey access to the key (or enable or recover the key) and the registry serves again within %s, without a restart",
		e.KeyID, e.Identity, e.Since.UTC().Format(time.RFC3339), e.Cause, e.Interval)
}

// Unwrap lets errors.Is find seal.ErrKeyUnavailable and the vault's error kind.
func (e *AccessError) Unwrap() []error { return []error{seal.ErrKeyUnavailable, e.Cause} }

// Keyring holds the registry's root keys. It is safe for concurrent use.
type Keyring struct {
	o  Options
	db rootStore

	checkMu sync.Mutex // serializes vault checks and rotations

	mu        sync.Mutex
	settings  *Settings
	roots     map[uint32][]byte
	accessErr *AccessError
	lastCheck time.Time
	lastRotCk time.Time
	lastMiss  time.Time // last reload for an unknown generation
}

// Open prepares the keyring's tables and loads its settings. It calls no vault: the root
// keys are unwrapped by Initialize, CheckAccess, or the first Key call.
func Open(ctx context.Context, o Options) (*Keyring, error) {
	if o.DB == nil || o.Resolver == nil {
		return nil, errors.New("keyring: DB and Resolver are required")
	}
	if o.AccessCheckInterval <= 0 {
		o.AccessCheckInterval = 60 * time.Second
	}
	if o.RotationCheckInterval <= 0 {
		o.RotationCheckInterval = time.Hour
	}
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	k := &Keyring{o: o, db: rootStore{db: o.DB}}
	if err := k.db.migrate(ctx); err != nil {
		return nil, err
	}
	st, _, err := k.db.load(ctx)
	if err != nil && !errors.Is(err, ErrNotInitialized) {
		return nil, err
	}
	k.settings = st
	return k, nil
}

// Settings returns the current settings (ErrNotInitialized before Initialize).
func (k *Keyring) Settings() (Settings, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.settings == nil {
		return Settings{}, ErrNotInitialized
	}
	return *k.settings, nil
}

// Initialize creates the registry's first root key and stores it wrapped under keyID, as
// identity reaches it. It checks the key fully first (type, permissions, a verified round
// trip). It fails if the keyring is already initialized.
func (k *Keyring) Initialize(ctx context.Context, source, keyID, identity string) error {
	if source != SourcePlatform && source != SourceCustomer {
		return fmt.Errorf("keyring: unknown key source %q", source)
	}
	k.checkMu.Lock()
	defer k.checkMu.Unlock()
	if _, _, err := k.db.load(ctx); !errors.Is(err, ErrNotInitialized) {
		if err == nil {
			return ErrAlreadyInitialized
		}
		return err
	}
	id, err := kek.ParseKeyID(keyID)
	if err != nil {
		return err
	}
	kk, err := k.o.Resolver.KEK(ctx, identity, keyID)
	if err != nil {
		return err
	}
	info, err := kek.CheckKey(ctx, kk, keyID)
	if err != nil {
		return err
	}
	root := make([]byte, seal.KeySize)
	if _, err := rand.Read(root); err != nil {
		return err
	}
	kid, wrapped, err := kek.WrapVerified(ctx, kk, info.KID, root)
	if err != nil {
		return err
	}
	now := k.o.Now().UTC()
	st := Settings{Source: source, KeyID: keyID, VersionedKeyID: kid, Identity: identity,
		RotationEnabled: id.Version == "", LastRotation: now, Generation: 1}
	if err := k.db.initialize(ctx, st, rootRow{gen: 1, wrapped: wrapped, kid: kid}, now); err != nil {
		return fmt.Errorf("store the wrapped root key: %w", err)
	}
	k.mu.Lock()
	k.settings = &st
	k.roots = map[uint32][]byte{1: root}
	k.accessErr = nil
	k.lastCheck = now
	k.lastRotCk = now
	k.mu.Unlock()
	k.o.Log.Info("registry encryption initialized", "source", source, "key", kid, "identity", identity)
	return nil
}

// CheckAccess unwraps the stored root keys again. On failure the keyring drops its root
// keys and refuses reads and writes with an *AccessError until a check succeeds. The
// returned error is the vault's.
func (k *Keyring) CheckAccess(ctx context.Context) error {
	k.checkMu.Lock()
	defer k.checkMu.Unlock()
	return k.checkLocked(ctx)
}

func (k *Keyring) checkLocked(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.o.CheckTimeout)
	defer cancel()
	st, rows, err := k.db.load(ctx)
	if err != nil {
		return err
	}
	roots, cause := k.unwrapAll(ctx, st, rows)
	if k.o.Checked != nil {
		k.o.Checked(cause)
	}
	now := k.o.Now().UTC()
	k.mu.Lock()
	defer k.mu.Unlock()
	was := k.accessErr
	k.settings = st
	k.lastCheck = now
	if cause != nil {
		since := now
		if was != nil {
			since = was.Since
		}
		k.accessErr = &AccessError{KeyID: st.VersionedKeyID, Identity: st.Identity, Since: since, Cause: cause, Interval: k.o.AccessCheckInterval}
		k.roots = nil
		if was == nil {
			k.o.Log.Error("registry encryption key is not accessible: reads and writes are refused", "key", st.VersionedKeyID, "identity", st.Identity, "err", cause)
		}
		return cause
	}
	k.accessErr = nil
	k.roots = roots
	if was != nil {
		k.o.Log.Info("registry encryption key is accessible again: reads and writes resume", "key", st.VersionedKeyID, "identity", st.Identity)
	}
	return nil
}

func (k *Keyring) unwrapAll(ctx context.Context, st *Settings, rows []rootRow) (map[uint32][]byte, error) {
	kk, err := k.o.Resolver.KEK(ctx, st.Identity, st.KeyID)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	cached := k.roots
	k.mu.Unlock()
	roots := make(map[uint32][]byte, len(rows))
	for _, r := range rows {
		secret, err := kk.UnwrapKey(ctx, r.kid, r.wrapped)
		if err != nil {
			return nil, err
		}
		if len(secret) != seal.KeySize {
			return nil, fmt.Errorf("root key of generation %d unwrapped to %d bytes: %w", r.gen, len(secret), kek.ErrUnwrapMismatch)
		}
		if old, ok := cached[r.gen]; ok && !kek.Equal(old, secret) {
			return nil, fmt.Errorf("root key of generation %d: %w", r.gen, kek.ErrUnwrapMismatch)
		}
		roots[r.gen] = secret
	}
	return roots, nil
}

// refreshIfStale runs an access check if the last one is older than the interval (the
// background loop normally keeps it fresh; this covers a stalled loop and startup).
func (k *Keyring) refreshIfStale(ctx context.Context) {
	stale := func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.settings != nil && k.o.Now().Sub(k.lastCheck) >= k.o.AccessCheckInterval
	}
	if !stale() {
		return
	}
	k.checkMu.Lock()
	defer k.checkMu.Unlock()
	if stale() {
		k.checkLocked(ctx)
	}
}

// CurrentKey implements seal.KeySource.
func (k *Keyring) CurrentKey(ctx context.Context) (uint32, []byte, error) {
	k.refreshIfStale(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.usableLocked(); err != nil {
		return 0, nil, err
	}
	gen := k.settings.Generation
	root, ok := k.roots[gen]
	if !ok {
		return 0, nil, fmt.Errorf("%w: no root key of generation %d", seal.ErrKeyUnavailable, gen)
	}
	return gen, root, nil
}

// Key implements seal.KeySource. A generation this keyring does not hold was created by
// another replica sharing the metadata store (NewGeneration there): the keyring reloads
// its root keys from the store then, instead of refusing until the next access check. Such reloads are at most one per missReloadInterval, so objects naming made-up
// generations cannot turn every read into a vault call.
func (k *Keyring) Key(ctx context.Context, gen uint32) ([]byte, error) {
	k.refreshIfStale(ctx)
	root, reload, err := k.key(gen)
	if reload {
		k.reloadFor(ctx, gen)
		root, _, err = k.key(gen)
	}
	return root, err
}

// missReloadInterval is the least time between two reloads for unknown generations.
const missReloadInterval = time.Second

// key looks gen up; reload tells whether a reload for the miss is allowed now.
func (k *Keyring) key(gen uint32) (root []byte, reload bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.usableLocked(); err != nil {
		return nil, false, err
	}
	root, ok := k.roots[gen]
	if ok {
		return root, false, nil
	}
	// Not only a generation newer than every one held: replicas adding generations at once
	// each hold their own and the ones before, so a replica may lack one below its newest.
	reload = k.lastMiss.IsZero() || k.o.Now().Sub(k.lastMiss) >= missReloadInterval
	return nil, reload, fmt.Errorf("%w: no root key of generation %d", seal.ErrKeyUnavailable, gen)
}

// reloadFor runs an access check (which loads every stored generation) for a generation
// this keyring has not seen, unless a concurrent caller has loaded it meanwhile.
func (k *Keyring) reloadFor(ctx context.Context, gen uint32) {
	k.checkMu.Lock()
	defer k.checkMu.Unlock()
	k.mu.Lock()
	_, have := k.roots[gen]
	due := k.lastMiss.IsZero() || k.o.Now().Sub(k.lastMiss) >= missReloadInterval
	if !have && due {
		k.lastMiss = k.o.Now()
	}
	k.mu.Unlock()
	if have || !due {
		return
	}
	if err := k.checkLocked(ctx); err != nil {
		k.o.Log.Warn("reload of the registry root keys for an unknown generation failed", "generation", gen, "err", err)
	}
}

func (k *Keyring) usableLocked() error {
	if k.settings == nil {
		return fmt.Errorf("%w: %w", seal.ErrKeyUnavailable, ErrNotInitialized)
	}
	if k.accessErr != nil {
		return k.accessErr
	}
	if k.roots == nil {
		return fmt.Errorf("%w: the root key has not been unwrapped yet", seal.ErrKeyUnavailable)
	}
	return nil
}

// Rotate re-wraps the root keys under keyID as identity reaches it: one get, then one wrap
// and one verifying unwrap per root-key generation, whatever the amount of data stored. A
// versionless keyID turns automatic rotation on, a versioned one pins that version.
func (k *Keyring) Rotate(ctx context.Context, keyID, identity string) (Settings, error) {
	k.checkMu.Lock()
	defer k.checkMu.Unlock()
	return k.rotateLocked(ctx, keyID, identity, "")
}

// changeAttempts bounds how often a change is computed again when another replica changed
// the keyring between its read and its write (errChanged).
const changeAttempts = 5

// Enable switches a registry from the platform-managed key to a customer-managed key.
// Once enabled it cannot be disabled (ErrAlreadyEnabled on a second call).
func (k *Keyring) Enable(ctx context.Context, keyID, identity string) (Settings, error) {
	k.checkMu.Lock()
	defer k.checkMu.Unlock()
	st, _, err := k.db.load(ctx) // as stored: another replica may have enabled it already
	if err != nil {
		return Settings{}, err
	}
	if st.Source == SourceCustomer {
		return *st, ErrAlreadyEnabled
	}
	return k.rotateLocked(ctx, keyID, identity, SourceCustomer)
}

// Disable always fails: encryption under a customer-managed key cannot be turned off.
func (k *Keyring) Disable(ctx context.Context) error { return ErrCannotDisable }

// rotateLocked re-wraps every generation under keyID; computed again when another replica
// changed the keyring meanwhile, so that no generation stays wrapped under the old KEK.
func (k *Keyring) rotateLocked(ctx context.Context, keyID, identity, source string) (Settings, error) {
	for attempt := 1; ; attempt++ {
		st, err := k.rotateOnce(ctx, keyID, identity, source)
		if !errors.Is(err, errChanged) || attempt == changeAttempts {
			return st, err
		}
	}
}

func (k *Keyring) rotateOnce(ctx context.Context, keyID, identity, source string) (Settings, error) {
	st, rows, err := k.db.load(ctx)
	if err != nil {
		return Settings{}, err
	}
	if identity == "" {
		identity = st.Identity
	}
	if source == "" {
		source = st.Source
	}
	id, err := kek.ParseKeyID(keyID)
	if err != nil {
		return Settings{}, err
	}
	k.mu.Lock()
	roots, accessErr := k.roots, k.accessErr
	k.mu.Unlock()
	if accessErr != nil {
		return Settings{}, fmt.Errorf("cannot rotate while the current key is not accessible (the root key must be unwrapped to re-wrap it): %w", accessErr)
	}
	for _, r := range rows {
		if _, ok := roots[r.gen]; !ok {
			if err := k.checkLocked(ctx); err != nil {
				return Settings{}, fmt.Errorf("cannot rotate: the current key is not accessible: %w", err)
			}
			k.mu.Lock()
			roots = k.roots
			k.mu.Unlock()
			break
		}
	}
	kk, err := k.o.Resolver.KEK(ctx, identity, keyID)
	if err != nil {
		return Settings{}, err
	}
	info, err := kek.CheckKey(ctx, kk, keyID)
	if err != nil {
		return Settings{}, err
	}
	var out []rootRow
	for _, r := range rows {
		kid, wrapped, err := kek.WrapVerified(ctx, kk, info.KID, roots[r.gen])
		if err != nil {
			return Settings{}, err
		}
		out = append(out, rootRow{gen: r.gen, wrapped: wrapped, kid: kid})
	}
	now := k.o.Now().UTC()
	nst := Settings{Source: source, KeyID: keyID, VersionedKeyID: info.KID, Identity: identity,
		RotationEnabled: id.Version == "", LastRotation: now, Generation: st.Generation}
	if err := k.db.rewrap(ctx, *st, nst, out); err != nil {
		return Settings{}, fmt.Errorf("store the re-wrapped root keys: %w", err)
	}
	k.mu.Lock()
	k.settings = &nst
	k.lastCheck = now
	k.lastRotCk = now
	k.mu.Unlock()
	k.o.Log.Info("registry encryption key rotated", "from", st.VersionedKeyID, "to", nst.VersionedKeyID, "identity", identity, "source", source)
	return nst, nil
}

// NewGeneration creates a new root key (generation N+1), wraps it under the current KEK
// version and makes it the one new objects are sealed under. Objects sealed under older
// generations stay readable (their root keys are kept, wrapped). It returns the new
// generation.
func (k *Keyring) NewGeneration(ctx context.Context) (uint32, error) {
	k.checkMu.Lock()
	defer k.checkMu.Unlock()
	for attempt := 1; ; attempt++ {
		gen, err := k.newGenerationOnce(ctx)
		if !errors.Is(err, errChanged) || attempt == changeAttempts {
			return gen, err
		}
	}
}

// newGenerationOnce adds generation N+1 to the stored keyring of N generations, or fails
// with errChanged if another replica changed it meanwhile.
func (k *Keyring) newGenerationOnce(ctx context.Context) (uint32, error) {
	st, _, err := k.db.load(ctx)
	if err != nil {
		return 0, err
	}
	k.mu.Lock()
	accessErr, roots := k.accessErr, k.roots
	k.mu.Unlock()
	if accessErr != nil || roots == nil {
		return 0, fmt.Errorf("cannot add a root key while the key-encryption key is not accessible: %w", errors.Join(seal.ErrKeyUnavailable, accessErr))
	}
	kk, err := k.o.Resolver.KEK(ctx, st.Identity, st.KeyID)
	if err != nil {
		return 0, err
	}
	root := make([]byte, seal.KeySize)
	if _, err := rand.Read(root); err != nil {
		return 0, err
	}
	kid, wrapped, err := kek.WrapVerified(ctx, kk, st.VersionedKeyID, root)
	if err != nil {
		return 0, err
	}
	gen := st.Generation + 1
	now := k.o.Now().UTC()
	if err := k.db.addGeneration(ctx, *st, rootRow{gen: gen, wrapped: wrapped, kid: kid}, now); err != nil {
		return 0, fmt.Errorf("store the new root key: %w", err)
	}
	k.mu.Lock()
	next := make(map[uint32][]byte, len(k.roots)+1)
	for g, r := range k.roots {
		next[g] = r
	}
	next[gen] = root
	k.roots = next
	nst := st
	nst.Generation = gen
	k.settings = nst
	k.mu.Unlock()
	k.o.Log.Info("new registry root key generation", "generation", gen, "key", kid)
	return gen, nil
}

// CheckRotation moves to the newest version of a versionless key, if there is a newer one.
// It reports whether it rotated.
func (k *Keyring) CheckRotation(ctx context.Context) (bool, error) {
	k.checkMu.Lock()
	defer k.checkMu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.o.CheckTimeout)
	defer cancel()
	// The settings as stored, not this keyring's copy: another replica sharing the store
	// may have changed the key or pinned a version since this one last read them, and a
	// rotation from the stale copy would undo that change.
	st, _, err := k.db.load(ctx)
	if err != nil {
		return false, err
	}
	k.mu.Lock()
	k.lastRotCk = k.o.Now()
	k.mu.Unlock()
	if !st.RotationEnabled {
		return false, nil
	}
	kk, err := k.o.Resolver.KEK(ctx, st.Identity, st.KeyID)
	if err != nil {
		return false, err
	}
	info, err := kk.GetKey(ctx, st.KeyID)
	if err != nil {
		return false, fmt.Errorf("check %s for a new version: %w", st.KeyID, err)
	}
	if info.KID == st.VersionedKeyID {
		return false, nil
	}
	if _, err := k.rotateLocked(ctx, st.KeyID, st.Identity, ""); err != nil {
		return false, fmt.Errorf("automatic rotation to %s: %w", info.KID, err)
	}
	return true, nil
}

// Run re-validates access every interval and checks a versionless key for new versions
// every rotation interval, until ctx ends.
func (k *Keyring) Run(ctx context.Context) {
	tick := min(k.o.AccessCheckInterval, k.o.RotationCheckInterval) / 2
	if tick < 50*time.Millisecond {
		tick = 50 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.mu.Lock()
		initialized := k.settings != nil
		accessDue := k.o.Now().Sub(k.lastCheck) >= k.o.AccessCheckInterval-min(tick, k.o.AccessCheckInterval/2)/2
		rotDue := k.o.Now().Sub(k.lastRotCk) >= k.o.RotationCheckInterval
		k.mu.Unlock()
		if !initialized {
			continue
		}
		if accessDue {
			k.CheckAccess(ctx)
		}
		if rotDue {
			if rotated, err := k.CheckRotation(ctx); err != nil {
				k.o.Log.Warn("automatic key rotation check failed", "err", err)
			} else if rotated {
				k.o.Log.Info("registry encryption key rotated automatically to the newest version")
			}
		}
	}
}

// Status is what `coffer registry encryption show` prints.
type Status struct {
	// Status is "enabled" when a customer-managed key is in use, "disabled" when the
	// platform-managed key is (as `az acr encryption show` reports customer-managed key
	// encryption); content is encrypted at rest either way, which EncryptedAtRest says.
	Status             string             `json:"status"`
	EncryptedAtRest    bool               `json:"encryptedAtRest"`
	KeySource          string             `json:"keySource"`
	KeyVaultProperties KeyVaultProperties `json:"keyVaultProperties"`
	// KeyAccessible says whether the registry could use its key at the last check, and
	// KeyAccessError gives the vault's error when it could not.
	KeyAccessible      bool       `json:"keyAccessible"`
	KeyAccessError     string     `json:"keyAccessError,omitempty"`
	LastKeyAccessCheck *time.Time `json:"lastKeyAccessCheck,omitempty"`
	// RootKeyGeneration is the generation of the root key new objects are sealed under
	// (1 for a registry that never added one; NewGeneration adds one).
	RootKeyGeneration uint32 `json:"rootKeyGeneration"`
}

// KeyVaultProperties mirror `az acr encryption show`.
type KeyVaultProperties struct {
	Identity                 string     `json:"identity"`
	KeyIdentifier            string     `json:"keyIdentifier"`
	VersionedKeyIdentifier   string     `json:"versionedKeyIdentifier"`
	KeyRotationEnabled       bool       `json:"keyRotationEnabled"`
	LastKeyRotationTimestamp *time.Time `json:"lastKeyRotationTimestamp,omitempty"`
}

// Status reports the settings and whether the key is accessible; with fresh it checks
// access with the vault first.
func (k *Keyring) Status(ctx context.Context, fresh bool) (Status, error) {
	if fresh {
		k.CheckAccess(ctx)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.settings == nil {
		return Status{}, ErrNotInitialized
	}
	st := *k.settings
	s := Status{Status: "disabled", EncryptedAtRest: true, KeySource: st.Source, KeyVaultProperties: KeyVaultProperties{
		Identity: st.Identity, KeyIdentifier: st.KeyID, VersionedKeyIdentifier: st.VersionedKeyID,
		KeyRotationEnabled: st.RotationEnabled,
	}, RootKeyGeneration: st.Generation}
	if st.Source == SourceCustomer {
		s.Status = "enabled"
	}
	if !st.LastRotation.IsZero() {
		t := st.LastRotation
		s.KeyVaultProperties.LastKeyRotationTimestamp = &t
	}
	if !k.lastCheck.IsZero() {
		t := k.lastCheck.UTC()
		s.LastKeyAccessCheck = &t
	}
	s.KeyAccessible = k.accessErr == nil && k.roots != nil
	if k.accessErr != nil {
		s.KeyAccessError = k.accessErr.Cause.Error()
	}
	return s, nil
}

// GuardIdentityRemoval refuses the removal of an identity the registry uses to reach its
// key. ids are the identity's names (object id, client id, resource name): any match counts.
func (k *Keyring) GuardIdentityRemoval(ids ...string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.settings == nil {
		return nil
	}
	for _, id := range ids {
		if id != "" && strings.EqualFold(id, k.settings.Identity) {
			return fmt.Errorf("%w: the registry reaches its encryption key %s as identity %s; rotate to another identity first "+
				"(coffer registry encryption rotate-key --key-encryption-key %s --identity OTHER-ID|[system]), then remove this one",
				ErrIdentityInUse, k.settings.KeyID, id, k.settings.KeyID)
		}
	}
	return nil
}
