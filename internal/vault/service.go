// Package vault is Coffer's key vault: named vaults holding versioned keys, the
// cryptographic operations on them, soft delete and purge protection, rotation policies,
// backups and network rules. Service is the one entry point: the REST API (package
// vault/api, which marks its calls WithClient) and in-process callers (the registry's
// key-encryption key, the KMS plugin, which mark theirs AsService) call the same methods,
// and every method authorizes its caller, applies the vault's network rules and writes an
// audit record. Addresses says where the vaults answer and which vault URLs are local.
//
// Key material is stored sealed (AES-256-GCM) under a key derived from the vault root key,
// which lives outside the metadata store (see LoadRootKey and docs/vault.md).
package vault

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

// Options configure a Service.
type Options struct {
	DB    *store.DB
	Log   *slog.Logger
	Audit *audit.Log
	// Authorizer decides every authorized call (the access part). Required.
	Authorizer access.Authorizer
	RootKey    []byte
	// Addresses say where this server's vaults answer: the base of key ids, and which
	// vault URLs are local (LocalVault). The zero value answers https://NAME.vault.localhost.
	Addresses Addresses
	// Policies, when set, holds the vaults' access policies: a deleted vault's policies go
	// with it, so that a vault created again under the same name starts with none.
	Policies Policies
	// CacheTTL bounds how long key metadata read from the store is trusted (other replicas
	// may change it). Default 2s.
	CacheTTL time.Duration
	Now      func() time.Time
	// HSM, when set, holds the -HSM keys of vaults created with HSM (package vault/hsm).
	HSM HSM
	// HSMAllVaults puts the -HSM keys of every vault in HSM, whatever the vault says.
	HSMAllVaults bool
}

// Policies removes the access policies of a deleted vault (the access part's
// DeleteVaultPolicies).
type Policies interface {
	DeleteVaultPolicies(ctx context.Context, vault string) error
}

// Service is the key vault.
type Service struct {
	db       *store.DB
	log      *slog.Logger
	audit    *audit.Log
	authz    access.Authorizer
	sealer   *sealer
	addrs    Addresses
	policies Policies
	ttl      time.Duration
	now      func() time.Time
	hsm      HSM
	hsmAll   bool

	mu sync.Mutex
	// subscribers hear of every vault created, updated or deleted (Subscribe).
	subscribers []func(v Vault, deleted bool)
	// keySubscribers hear of every new key version (SubscribeKeyVersions).
	keySubscribers []func(vault, name string)
	// portCheckers check a port before a vault gets it (CheckPortsWith).
	portCheckers []func(ctx context.Context, vault string, port int) error
	vaults       map[string]cachedVault
	// keyCache holds keys by their folded name (ck(vault, lower(name))): names are
	// case-insensitive, so all the spellings of a name share one entry.
	keyCache  map[string]*cachedKeys
	materials map[string]keys.Operator
}

type cachedVault struct {
	v      Vault
	loaded time.Time
}

type cachedKey struct {
	row      keyRow
	versions []versionRow
}

// cachedKeys are the stored keys whose names fold to one name: one, except in a data
// directory from before names became case-insensitive (see keyByName).
type cachedKeys struct {
	rows   []keyRow
	keys   []*cachedKey
	loaded time.Time
}

// New prepares the vault's tables and returns the service.
func New(ctx context.Context, o Options) (*Service, error) {
	if len(o.RootKey) != 32 {
		return nil, errors.New("vault root key must be 32 bytes")
	}
	if o.Authorizer == nil {
		return nil, errors.New("vault: Options.Authorizer is required (the access part decides every call; wire the access service before the vault)")
	}
	if err := o.DB.Migrate(ctx, "vault", migrations); err != nil {
		return nil, err
	}
	sl, err := newSealer(o.RootKey)
	if err != nil {
		return nil, err
	}
	s := &Service{db: o.DB, log: o.Log, audit: o.Audit, authz: o.Authorizer, sealer: sl, addrs: o.Addresses,
		policies: o.Policies, ttl: o.CacheTTL, now: o.Now, hsm: o.HSM, hsmAll: o.HSMAllVaults && o.HSM != nil,
		vaults: map[string]cachedVault{}, keyCache: map[string]*cachedKeys{}, materials: map[string]keys.Operator{}}
	if s.ttl == 0 {
		s.ttl = 2 * time.Second
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// vaultURL is the URL vault v answers at (the base of its key ids).
func (s *Service) vaultURL(v Vault) string { return s.addrs.VaultURL(v) }

// Addresses are where this server's vaults answer.
func (s *Service) Addresses() Addresses { return s.addrs }

// Subscribe calls fn after every vault created, updated or deleted, in the goroutine of the
// call that changed it (the vault API opens and closes per-vault ports with it).
func (s *Service) Subscribe(fn func(v Vault, deleted bool)) {
	s.mu.Lock()
	s.subscribers = append(s.subscribers, fn)
	s.mu.Unlock()
}

// SubscribeKeyVersions calls fn after every new version of a key is stored (create, import,
// rotate, a rotation policy's Rotate), with the vault's and the key's names, in the goroutine
// of the call that made it (the in-process KMS plugin polls when its write key gets a new
// version). fn must return quickly and must not call back into the vault in that goroutine.
func (s *Service) SubscribeKeyVersions(fn func(vault, name string)) {
	s.mu.Lock()
	s.keySubscribers = append(s.keySubscribers, fn)
	s.mu.Unlock()
}

// newKeyVersion tells the key subscribers that vault/name has a new version.
func (s *Service) newKeyVersion(vault, name string) {
	s.mu.Lock()
	subs := append([]func(string, string){}, s.keySubscribers...)
	s.mu.Unlock()
	for _, fn := range subs {
		fn(vault, name)
	}
}

// changed tells the subscribers that v changed.
func (s *Service) changed(v Vault, deleted bool) {
	s.mu.Lock()
	subs := append([]func(Vault, bool){}, s.subscribers...)
	s.mu.Unlock()
	for _, fn := range subs {
		fn(v, deleted)
	}
}

// Client describes where a call comes from. The REST API sets it on the context
// (WithClient); a Coffer service calling in-process marks its context with AsService
// instead. A data-plane call whose context carries neither (nor AsServer) is refused.
type Client struct {
	Addr      netip.Addr
	UserAgent string
	// BaseURL is the vault URL the client used (scheme and host); key ids in answers use it.
	BaseURL string
}

// originKind says who makes a call: a remote client, a named Coffer service in the same
// process, or Coffer itself (bootstrap and scheduled work).
type originKind int

const (
	originClient originKind = iota + 1
	originService
	originServer
)

// origin is where a call comes from. One context key holds it, so the mark set last wins.
type origin struct {
	kind    originKind
	client  Client
	service string
}

type originKey struct{}

// WithClient marks ctx as a call from a remote client: network rules apply to its address.
func WithClient(ctx context.Context, c Client) context.Context {
	return context.WithValue(ctx, originKey{}, origin{kind: originClient, client: c})
}

// AsService marks ctx as a call from the Coffer service name (for example "kek" for the
// in-process KEK driver) in the same process, acting as the principal it passes. Access
// checks apply as for any caller; network rules let it through only when the vault's bypass
// is CofferServices. The audit trail records clientAddress "in-process" and userAgent
// "coffer/NAME". Only in-process code can set it.
func AsService(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, originKey{}, origin{kind: originService, service: name})
}

// AsServer marks ctx as Coffer acting on its own behalf (bootstrap: creating the platform
// vault and key; scheduled rotation and purge). Authorization is skipped; the audit trail
// names "coffer-server"; network rules treat it as one of Coffer's services. Only
// in-process code can set it.
func AsServer(ctx context.Context) context.Context {
	return context.WithValue(ctx, originKey{}, origin{kind: originServer})
}

func originOf(ctx context.Context) origin {
	o, _ := ctx.Value(originKey{}).(origin)
	return o
}

func clientOf(ctx context.Context) (Client, bool) {
	o := originOf(ctx)
	return o.client, o.kind == originClient
}

func isServer(ctx context.Context) bool { return originOf(ctx).kind == originServer }

// ---- authorization, network rules, audit ----

// checkNetwork applies the vault's network rules to a data-plane call. A call that does not
// say where it comes from is refused whatever the rules: no caller gets the bypass by
// omission.
func (s *Service) checkNetwork(ctx context.Context, v Vault) error {
	o := originOf(ctx)
	if o.kind == 0 {
		return unmarked(v.Name)
	}
	r := v.NetworkRules
	if r.DefaultAction != ActionDeny {
		return nil
	}
	c, remote := o.client, o.kind == originClient
	if !remote {
		if r.Bypass == BypassCofferServices {
			return nil
		}
		return fmt.Errorf("%w: vault %q network rules deny by default and do not let Coffer's services bypass them (bypass=None)", ErrNetworkDenied, v.Name)
	}
	addr := c.Addr.Unmap()
	for _, rule := range r.IPRules {
		p, err := parsePrefix(rule)
		if err == nil && p.Contains(addr) {
			return nil
		}
	}
	return fmt.Errorf("%w: client address %s is not allowed by vault %q network rules (defaultAction=Deny, no ipRules entry matches)", ErrNetworkDenied, addr, v.Name)
}

// unmarked refuses a call whose context says neither that it is remote (WithClient) nor
// that it is one of Coffer's services (AsService, AsServer): nobody is trusted by omission.
func unmarked(vault string) error {
	return forbidden(fmt.Errorf("%w: the call to vault %q does not say where it comes from: a remote call carries vault.WithClient, a Coffer service in the same process vault.AsService(ctx, name)", access.ErrDenied, vault))
}

// enter is the start of every key operation on a vault: find the vault, then authorize the
// caller for action at scope (network rules first for data-plane calls).
func (s *Service) enter(ctx context.Context, caller identity.Principal, vault string, action access.Action, scope access.Scope, dataPlane bool) (Vault, error) {
	v, err := s.vault(ctx, vault)
	if err != nil {
		return Vault{}, err
	}
	if err := s.authorize(ctx, caller, v, action, scope, dataPlane); err != nil {
		return Vault{}, err
	}
	return v, nil
}

func (s *Service) authorize(ctx context.Context, caller identity.Principal, v Vault, action access.Action, scope access.Scope, dataPlane bool) error {
	if originOf(ctx).kind == 0 {
		return unmarked(v.Name)
	}
	if dataPlane {
		if err := s.checkNetwork(ctx, v); err != nil {
			return err
		}
	}
	if isServer(ctx) {
		return nil
	}
	req := access.Request{Principal: caller, Action: action, Scope: scope, VaultUsesPolicies: dataPlane && !v.EnableRbacAuthorization}
	if err := s.authz.Authorize(ctx, req); err != nil {
		if errors.Is(err, access.ErrDenied) {
			return forbidden(err)
		}
		return fmt.Errorf("authorize %s: %w", action, err)
	}
	return nil
}

type auditEntry struct {
	op, target, alg string
	// res is the audited resource's path (vaults/V/keys/K), what audit filters match.
	res   string
	start time.Time
	sync  bool
}

func (s *Service) record(ctx context.Context, caller identity.Principal, e auditEntry, err error) {
	if s.audit == nil {
		return
	}
	r := audit.Record{Time: e.start, Component: "vault", Operation: e.op, Target: e.target, Resource: e.res, Algorithm: e.alg,
		PrincipalID: caller.ID, PrincipalName: caller.Name, PrincipalKind: string(caller.Kind),
		Duration: s.now().Sub(e.start), Result: audit.ResultSuccess}
	o := originOf(ctx)
	if o.kind == originServer && caller.ID == "" {
		r.PrincipalName = "coffer-server"
	}
	switch o.kind {
	case originClient:
		if o.client.Addr.IsValid() {
			r.ClientAddr = o.client.Addr.String()
		}
		r.UserAgent = o.client.UserAgent
	case originService:
		r.ClientAddr = "in-process"
		r.UserAgent = "coffer/" + o.service
	default:
		r.ClientAddr = "in-process"
	}
	if err != nil {
		r.Result = audit.ResultFailure
		if errors.Is(err, ErrForbidden) || errors.Is(err, ErrNetworkDenied) {
			r.Result = audit.ResultDenied
		}
		r.Detail = err.Error()
	}
	if e.sync {
		if werr := s.audit.RecordSync(context.WithoutCancel(ctx), r); werr != nil {
			s.log.Error("audit record not written", "operation", e.op, "err", werr)
		}
		return
	}
	s.audit.Record(r)
}

// resource is the audit resource path of a vault or a key.
func resource(vault, key string) string {
	if key == "" {
		return "vaults/" + vault
	}
	return "vaults/" + vault + "/keys/" + key
}

// ---- caches ----

// vault returns the vault name (any case: vault names are case-insensitive, stored in
// lower case).
func (s *Service) vault(ctx context.Context, name string) (Vault, error) {
	name = strings.ToLower(name)
	s.mu.Lock()
	c, ok := s.vaults[name]
	s.mu.Unlock()
	if ok && s.now().Sub(c.loaded) < s.ttl {
		return c.v, nil
	}
	v, err := getVaultRow(ctx, s.db, name)
	if err != nil {
		return v, err
	}
	v.URL = s.vaultURL(v)
	s.mu.Lock()
	if len(s.vaults) > 10000 {
		clear(s.vaults)
	}
	s.vaults[name] = cachedVault{v: v, loaded: s.now()}
	s.mu.Unlock()
	return v, nil
}

func (s *Service) forgetVault(name string) {
	s.mu.Lock()
	delete(s.vaults, strings.ToLower(name))
	s.mu.Unlock()
}

func ck(vault, name string) string { return vault + "\x00" + name }

// foldKey is the key-cache entry of every spelling of a key name.
func foldKey(vault, name string) string { return ck(vault, strings.ToLower(name)) }

// loadKey returns the key name addresses (any case: see keyByName) and its versions
// (oldest first), live or deleted. The key's row carries its stored name: callers use
// c.row.Name, never the name they were given, from then on.
func (s *Service) loadKey(ctx context.Context, vault, name string) (*cachedKey, error) {
	fk := foldKey(vault, name)
	s.mu.Lock()
	c, ok := s.keyCache[fk]
	s.mu.Unlock()
	if !ok || s.now().Sub(c.loaded) >= s.ttl {
		rows, err := getKeyRows(ctx, s.db, vault, name)
		if err != nil {
			return nil, err
		}
		if len(rows) == 0 {
			return nil, fmt.Errorf("%w: key %q does not exist in vault %q", ErrNotFound, name, vault)
		}
		c = &cachedKeys{rows: rows, loaded: s.now()}
		for _, row := range rows {
			versions, err := listVersionRows(ctx, s.db, vault, row.Name)
			if err != nil {
				return nil, err
			}
			c.keys = append(c.keys, &cachedKey{row: row, versions: versions})
		}
		s.mu.Lock()
		if len(s.keyCache) > 10000 {
			clear(s.keyCache)
		}
		s.keyCache[fk] = c
		s.mu.Unlock()
	}
	i, err := keyByName(c.rows, vault, name)
	if err != nil {
		return nil, err
	}
	return c.keys[i], nil
}

func (s *Service) forgetKey(vault, name string) {
	s.mu.Lock()
	delete(s.keyCache, foldKey(vault, name))
	s.mu.Unlock()
}

func (s *Service) forgetMaterial(vault, name string, versions []versionRow) {
	s.mu.Lock()
	for _, v := range versions {
		delete(s.materials, ck(vault, name)+"\x00"+v.Version)
	}
	s.mu.Unlock()
}

// liveKey returns a key that is not deleted.
func (s *Service) liveKey(ctx context.Context, vault, name string) (*cachedKey, error) {
	c, err := s.loadKey(ctx, vault, name)
	if err != nil {
		return nil, err
	}
	if c.row.Deleted != 0 || len(c.versions) == 0 {
		return nil, fmt.Errorf("%w: key %q does not exist in vault %q", ErrNotFound, name, vault)
	}
	return c, nil
}

// liveVersionKey is liveKey for a request that names version: a version the cached key
// metadata lacks is looked up again in the store before it is called missing, so a
// version another replica has just created (a rotation made there) is usable here at
// once, not only after the cache's TTL.
func (s *Service) liveVersionKey(ctx context.Context, vault, name, version string) (*cachedKey, error) {
	c, err := s.liveKey(ctx, vault, name)
	if err != nil || version == "" || slices.ContainsFunc(c.versions, func(v versionRow) bool { return v.Version == version }) {
		return c, err
	}
	s.forgetKey(vault, name)
	return s.liveKey(ctx, vault, name)
}

// pick returns the named version, or the newest one (enabledOnly: the newest enabled one).
func pick(c *cachedKey, version string, enabledOnly bool) (versionRow, error) {
	if version == "" {
		for i := len(c.versions) - 1; i >= 0; i-- {
			if !enabledOnly || c.versions[i].Enabled {
				return c.versions[i], nil
			}
		}
		if enabledOnly && len(c.versions) > 0 {
			return c.versions[len(c.versions)-1], nil // reported as disabled by the caller
		}
		return versionRow{}, fmt.Errorf("%w: key %q has no versions", ErrNotFound, c.row.Name)
	}
	for _, v := range c.versions {
		if v.Version == version {
			return v, nil
		}
	}
	return versionRow{}, fmt.Errorf("%w: key %q has no version %q", ErrNotFound, c.row.Name, version)
}

// material returns the operations of version r: its sealed material parsed, or for a key
// in the HSM, the token object the sealed record names.
func (s *Service) material(ctx context.Context, r versionRow) (keys.Operator, error) {
	id := ck(r.Vault, r.Name) + "\x00" + r.Version
	s.mu.Lock()
	m, ok := s.materials[id]
	s.mu.Unlock()
	if ok {
		return m, nil
	}
	plain, err := open(s.sealer.material, r.Sealed, materialAAD(r.Vault, r.Name, r.Version))
	if err != nil {
		return nil, fmt.Errorf("unseal key %s/%s: wrong vault root key or damaged record: %w", r.Name, r.Version, err)
	}
	var j keys.JWK
	if err := jsonUnmarshal(plain, &j); err != nil {
		return nil, fmt.Errorf("unseal key %s/%s: %w", r.Name, r.Version, err)
	}
	clear(plain)
	if r.HSM != "" || len(j.KeyHSM) > 0 {
		m, err = s.hsmOperator(ctx, r, j)
	} else {
		m, err = keys.Parse(j)
	}
	if err != nil {
		return nil, fmt.Errorf("unseal key %s/%s: %w", r.Name, r.Version, err)
	}
	s.mu.Lock()
	if len(s.materials) > 4096 {
		clear(s.materials)
	}
	s.materials[id] = m
	s.mu.Unlock()
	return m, nil
}

func newVersionID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ---- conversions ----

func (s *Service) baseURL(ctx context.Context, v Vault) string {
	if c, ok := clientOf(ctx); ok && c.BaseURL != "" {
		return c.BaseURL
	}
	return v.URL
}

// KeyID is the full key id of a version: BASE/keys/NAME/VERSION.
func KeyID(base, name, version string) string { return base + "/keys/" + name + "/" + version }

func recoveryLevel(v Vault) string {
	if v.EnablePurgeProtection {
		return "Recoverable"
	}
	return "Recoverable+Purgeable"
}

func (s *Service) toKey(ctx context.Context, v Vault, r versionRow) Key {
	kid := KeyID(s.baseURL(ctx, v), r.Name, r.Version)
	j := r.Public
	j.Kid = kid
	j.Kty = r.Kty
	j.KeyOps = append([]string{}, r.KeyOps...)
	k := Key{ID: kid, Vault: v.Name, Name: r.Name, Version: r.Version, JWK: j, Tags: r.Tags,
		Attributes: Attributes{Enabled: r.Enabled, Created: time.Unix(r.Created, 0).UTC(), Updated: time.Unix(r.Updated, 0).UTC(),
			RecoveryLevel: recoveryLevel(v), RecoverableDays: v.SoftDeleteRetentionDays}}
	if k.Tags == nil {
		k.Tags = map[string]string{}
	}
	if r.NBF != 0 {
		t := time.Unix(r.NBF, 0).UTC()
		k.Attributes.NotBefore = &t
	}
	if r.Exp != 0 {
		t := time.Unix(r.Exp, 0).UTC()
		k.Attributes.Expires = &t
	}
	if m, err := keys.Parse(r.Public); err == nil {
		k.Size = m.Size()
	}
	if r.HSM != "" {
		k.Attributes.HSMPlatform = "PKCS#11"
		if s.hsm != nil {
			k.Attributes.HSMPlatform = s.hsm.Platform()
		}
	}
	return k
}

// checkUsable refuses disabled, not-yet-valid and expired versions.
func (s *Service) checkUsable(r versionRow, op string) error {
	now := s.now().Unix()
	switch {
	case !r.Enabled:
		return fmt.Errorf("%w: operation %s is not allowed on a disabled key (version %s)", ErrDisabled, op, r.Version)
	case r.NBF != 0 && now < r.NBF:
		return fmt.Errorf("%w: operation %s is not allowed before the key's nbf %s", ErrNotYetValid, op, time.Unix(r.NBF, 0).UTC().Format(time.RFC3339))
	case r.Exp != 0 && now >= r.Exp:
		return fmt.Errorf("%w: operation %s is not allowed on a key that expired at %s", ErrExpired, op, time.Unix(r.Exp, 0).UTC().Format(time.RFC3339))
	}
	return nil
}
