// Package kms holds the KMS v2 settings of each Kubernetes cluster on the Coffer server
// (docs/kms.md): which key wraps the cluster's seeds (a platform-managed key, PMK, that
// Coffer creates in its platform vault with a rotation policy, or the team's
// customer-managed key, CMK), the identity the cluster's plugin acts as, how it reaches the
// vault (Public: directly; Private: through Coffer, as a Coffer service, so a vault that
// denies by default but lets Coffer's services bypass still serves it), every earlier key
// kept decrypt-only, and the plugin's last reported Status.
//
// The plugin (package kmsplugin, run by `coffer kms-plugin`) fetches its settings with its
// own identity, so moving a cluster between PMK and CMK changes nothing on the node. A key
// is never disabled or deleted here: a decrypt-only key stays until `coffer kms reencrypt`
// rewrote every resource under the current key, and then it is only marked retirable.
//
// It knows nothing of HTTP: the management handlers are in kms/kmsapi.
package kms

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vault"
)

// The platform vault holds one PMK per cluster.
const (
	PlatformVaultName = "coffer-kms"
	// pmkRotation is the PMK's rotation policy (ISO 8601).
	pmkRotation = "P30D"
	pmkSize     = 3072
)

// Key management options, network access and access modes (the same strings as the
// management API's).
const (
	PlatformManaged = "PMK"
	CustomerManaged = "CMK"
	NetworkPublic   = "Public"
	NetworkPrivate  = "Private"
	AccessDirect    = "direct"
	AccessCoffer    = "coffer"
)

// Spec creates or changes a cluster's settings; on update, empty fields stay as they are.
type Spec struct {
	Name, KeyManagement, KeyID, KeyVaultNetworkAccess, Identity, InfrastructureEncryption string
}

// DecryptKey is an earlier write key, kept so old Secrets read.
type DecryptKey struct {
	KeyID                 string    `json:"keyId"`
	KeyManagement         string    `json:"keyManagement"`
	KeyVaultNetworkAccess string    `json:"keyVaultNetworkAccess"`
	Since                 time.Time `json:"since"`
	Retirable             bool      `json:"retirable"`
}

// PluginStatus is the plugin's last Status as it reported it.
type PluginStatus struct {
	KeyID      string    `json:"keyId"`
	Healthz    string    `json:"healthz"`
	Error      string    `json:"error,omitempty"`
	CheckedAt  time.Time `json:"checkedAt"`
	ReportedAt time.Time `json:"reportedAt"`
}

// PluginSettings are what the plugin runs with: the write key, the decrypt-only keys, and
// the keys it reaches through Coffer (the others directly).
type PluginSettings struct {
	WriteKey      string
	DecryptKeys   []string
	Access        string
	ThroughCoffer []string
}

// Errors (wrapped; the handlers map them to statuses).
var (
	ErrNotFound  = errors.New("cluster not found")
	ErrConflict  = errors.New("conflict")
	ErrInvalid   = errors.New("invalid cluster settings")
	ErrForbidden = errors.New("forbidden")
)

// Resolver gives the in-process KEK driver acting as an authenticated principal
// (resolve.Resolver.ForPrincipal).
type Resolver interface {
	ForPrincipal(ctx context.Context, p identity.Principal, keyID string) (kek.KEK, error)
}

// Identities resolves a principal reference (identity.Service).
type Identities interface {
	Resolve(ctx context.Context, ref string) (identity.Principal, error)
}

// Policies sets a vault access policy (access.Service).
type Policies interface {
	SetPolicy(ctx context.Context, vault, objectID string, keyPermissions []string) (access.AccessPolicy, error)
}

// LocalVaults tells whether a vault URL is one of this server's (vault.Service).
type LocalVaults interface {
	LocalVault(ctx context.Context, vaultURL string) (name string, ok bool, err error)
}

// Options configure the service.
type Options struct {
	DB         *store.DB
	Vault      *vault.Service
	Local      LocalVaults
	Resolver   Resolver
	Identities Identities
	Policies   Policies
	Audit      *audit.Log
	// PlatformVaultURL is the base URL of the platform vault's key ids.
	PlatformVaultURL string
	Log              *slog.Logger
}

// Service is the cluster settings service.
type Service struct {
	o  Options
	st clusterStore

	mu sync.Mutex
	// subscribers hear of every change of a cluster's keys (Subscribe).
	subscribers []func(ctx context.Context, cluster string)
}

// Subscribe calls fn after a change that can change what a cluster's plugin runs with: its
// settings updated (a new write key, PMK ↔ CMK, another identity), a new version of its PMK
// (RotateNow), the cluster deleted. fn runs in the goroutine of the call that made the change,
// before that call returns (the in-process plugin polls at once: internal/server/kmsplugin.go);
// it must not call back into a settings change.
func (s *Service) Subscribe(fn func(ctx context.Context, cluster string)) {
	s.mu.Lock()
	s.subscribers = append(s.subscribers, fn)
	s.mu.Unlock()
}

// changed tells the subscribers that cluster changed.
func (s *Service) changed(ctx context.Context, cluster string) {
	s.mu.Lock()
	subs := slices.Clone(s.subscribers)
	s.mu.Unlock()
	for _, fn := range subs {
		fn(ctx, cluster)
	}
}

// New migrates the tables and returns the service.
func New(ctx context.Context, o Options) (*Service, error) {
	if o.DB == nil || o.Vault == nil || o.Local == nil || o.Resolver == nil || o.Identities == nil || o.Policies == nil {
		return nil, errors.New("kms: the store, the vault, the local vault lookup, the KEK resolver, the identities and the access policies are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Service{o: o, st: sqlStore{db: o.DB}}
	if err := s.st.migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Cluster is a cluster's stored settings.
type Cluster struct {
	Name          string `json:"name"`
	KeyManagement string `json:"keyManagement"`
	// KeyID is the versionless id of the write key.
	KeyID         string `json:"keyId"`
	NetworkAccess string `json:"keyVaultNetworkAccess"`
	// IdentityID is the plugin principal's object id; IdentityName its name.
	IdentityID   string        `json:"identityId"`
	IdentityName string        `json:"identityName"`
	InfraEnc     string        `json:"infrastructureEncryption"`
	DecryptOnly  []DecryptKey  `json:"decryptOnly"`
	KeyCheck     string        `json:"keyCheck"`
	Status       *PluginStatus `json:"-"`
	Created      time.Time     `json:"created"`
	Updated      time.Time     `json:"updated"`
}

var clusterNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Create configures a cluster. The key is checked now: a PMK is created and the plugin's
// identity granted it; a CMK in one of this server's vaults is probed as the plugin's
// identity (get, wrap, unwrap).
func (s *Service) Create(ctx context.Context, caller identity.Principal, req Spec) (Cluster, error) {
	if !clusterNameRE.MatchString(req.Name) {
		return Cluster{}, fmt.Errorf("%w: cluster name %q must be 1-63 lower-case letters, digits and hyphens", ErrInvalid, req.Name)
	}
	unlock, err := s.lock(ctx, req.Name)
	if err != nil {
		return Cluster{}, err
	}
	defer unlock()
	if _, err := s.st.get(ctx, req.Name); err == nil {
		return Cluster{}, fmt.Errorf("%w: cluster %s already exists: use `coffer kms cluster update`", ErrConflict, req.Name)
	} else if !errors.Is(err, ErrNotFound) {
		return Cluster{}, err
	}
	if req.Identity == "" {
		return Cluster{}, fmt.Errorf("%w: --identity is required: the service principal the cluster's plugin acts as", ErrInvalid)
	}
	now := time.Now().UTC()
	c := Cluster{Name: req.Name, Created: now, Updated: now, InfraEnc: "Disabled"}
	if err := s.apply(ctx, &c, req); err != nil {
		s.record(caller, "kms.cluster.create", c.Name, err)
		return Cluster{}, err
	}
	if err := s.st.put(ctx, c, true); err != nil {
		return Cluster{}, err
	}
	s.record(caller, "kms.cluster.create", c.Name, nil)
	s.o.Log.Info("kms cluster configured", "cluster", c.Name, "keyManagement", c.KeyManagement, "key", c.KeyID)
	return c, nil
}

// Update changes a cluster's settings. A new write key (PMK ↔ CMK, another CMK) makes the
// previous one decrypt-only.
func (s *Service) Update(ctx context.Context, caller identity.Principal, name string, req Spec) (Cluster, error) {
	unlock, err := s.lock(ctx, name)
	if err != nil {
		return Cluster{}, err
	}
	defer unlock()
	c, err := s.st.get(ctx, name)
	if err != nil {
		return Cluster{}, err
	}
	prev := c
	if req.KeyManagement == "" {
		req.KeyManagement = c.KeyManagement
		if req.KeyID == "" && c.KeyManagement == CustomerManaged {
			req.KeyID = c.KeyID
		}
	}
	if req.Identity == "" {
		req.Identity = c.IdentityID
	}
	if err := s.apply(ctx, &c, req); err != nil {
		s.record(caller, "kms.cluster.update", name, err)
		return Cluster{}, err
	}
	if !strings.EqualFold(prev.KeyID, c.KeyID) {
		c.DecryptOnly = slices.DeleteFunc(c.DecryptOnly, func(d DecryptKey) bool { return strings.EqualFold(d.KeyID, c.KeyID) })
		c.DecryptOnly = append(c.DecryptOnly, DecryptKey{KeyID: prev.KeyID, KeyManagement: prev.KeyManagement, KeyVaultNetworkAccess: prev.NetworkAccess, Since: time.Now().UTC()})
	}
	c.Updated = time.Now().UTC()
	if err := s.st.put(ctx, c, false); err != nil {
		return Cluster{}, err
	}
	s.record(caller, "kms.cluster.update", name, nil)
	s.o.Log.Info("kms cluster changed", "cluster", name, "keyManagement", c.KeyManagement, "key", c.KeyID, "decrypt_only", len(c.DecryptOnly))
	s.changed(ctx, name)
	return c, nil
}

// apply validates req into c and checks the key as the plugin's identity.
func (s *Service) apply(ctx context.Context, c *Cluster, req Spec) error {
	p, err := s.o.Identities.Resolve(ctx, req.Identity)
	if err != nil {
		return fmt.Errorf("%w: identity %s: %w", ErrInvalid, req.Identity, err)
	}
	// The system identity is the Coffer host's system-assigned identity: a plugin on that
	// host gets it from the managed-identity endpoint with no client id.
	if p.Kind != identity.KindServicePrincipal && p.Kind != identity.KindManagedIdentity && p.Kind != identity.KindSystemIdentity {
		return fmt.Errorf("%w: identity %s is a %s: the plugin acts as a service principal or a managed identity (user-assigned, or the host's system-assigned one)", ErrInvalid, req.Identity, p.Kind)
	}
	c.IdentityID, c.IdentityName = p.ID, p.Name
	switch na := req.KeyVaultNetworkAccess; {
	case na == "" && c.NetworkAccess == "":
		c.NetworkAccess = NetworkPublic
	case strings.EqualFold(na, NetworkPublic):
		c.NetworkAccess = NetworkPublic
	case strings.EqualFold(na, NetworkPrivate):
		c.NetworkAccess = NetworkPrivate
	case na != "":
		return fmt.Errorf("%w: keyVaultNetworkAccess %q must be Public or Private", ErrInvalid, na)
	}
	switch ie := req.InfrastructureEncryption; {
	case strings.EqualFold(ie, "Enabled"):
		c.InfraEnc = "Enabled"
	case strings.EqualFold(ie, "Disabled"):
		c.InfraEnc = "Disabled"
	case ie != "":
		return fmt.Errorf("%w: infrastructureEncryption %q must be Enabled or Disabled", ErrInvalid, ie)
	}
	switch strings.ToUpper(req.KeyManagement) {
	case PlatformManaged:
		if req.KeyID != "" {
			return fmt.Errorf("%w: a platform-managed key is created by Coffer: drop --key-id, or use --key-management CMK", ErrInvalid)
		}
		keyID, err := s.ensurePMK(ctx, c.Name, p)
		if err != nil {
			return err
		}
		c.KeyManagement, c.KeyID = PlatformManaged, keyID
		c.KeyCheck = "platform-managed key created in vault " + PlatformVaultName + " and granted to " + p.Name
		return s.probe(ctx, p, keyID)
	case CustomerManaged:
		id, err := kek.ParseKeyID(req.KeyID)
		if err != nil {
			return fmt.Errorf("%w: --key-id: %w", ErrInvalid, err)
		}
		if id.Version != "" {
			return fmt.Errorf("%w: --key-id %s names a version: give the versionless key id (https://VAULT-HOST/keys/NAME) so that rotations are picked up", ErrInvalid, req.KeyID)
		}
		c.KeyManagement, c.KeyID = CustomerManaged, id.String()
		_, local, err := s.o.Local.LocalVault(ctx, id.Vault)
		if err != nil {
			return err
		}
		if !local {
			c.KeyCheck = "not checked by the server (the vault is not this server's): the plugin checks it at start and reports its status"
			return nil
		}
		if err := s.probe(ctx, p, id.String()); err != nil {
			return err
		}
		c.KeyCheck = "get, wrapKey and unwrapKey checked as " + p.Name + " at " + time.Now().UTC().Format(time.RFC3339)
		return nil
	default:
		return fmt.Errorf("%w: --key-management %q must be PMK (platform-managed) or CMK (customer-managed)", ErrInvalid, req.KeyManagement)
	}
}

// probe checks that p can get, wrap and unwrap with keyID (in this server's vault).
func (s *Service) probe(ctx context.Context, p identity.Principal, keyID string) error {
	k, err := s.o.Resolver.ForPrincipal(ctx, p, keyID)
	if err != nil {
		return err
	}
	if _, err := kek.Probe(ctx, k, keyID); err != nil {
		return fmt.Errorf("%w: the plugin's identity %s cannot use key %s (it needs Key Vault Crypto User, or an access policy with get, wrapKey and unwrapKey): %w", ErrInvalid, p.Name, keyID, err)
	}
	return nil
}

// ensurePMK creates the platform vault and the cluster's key (RSA 3072, rotated by
// policy) when missing, and grants p get, wrapKey and unwrapKey.
func (s *Service) ensurePMK(ctx context.Context, cluster string, p identity.Principal) (string, error) {
	svc := s.o.Vault
	asServer := vault.AsServer(ctx)
	none := identity.Principal{}
	if _, err := svc.LookupVault(ctx, PlatformVaultName); errors.Is(err, vault.ErrNotFound) {
		if _, err := svc.CreateVault(asServer, none, vault.Vault{Name: PlatformVaultName, EnablePurgeProtection: true, SoftDeleteRetentionDays: 90}); err != nil && !errors.Is(err, vault.ErrConflict) {
			return "", fmt.Errorf("create vault %s: %w", PlatformVaultName, err)
		}
	} else if err != nil {
		return "", err
	}
	name := "kms-" + cluster
	if _, err := svc.GetKey(asServer, none, PlatformVaultName, name, ""); errors.Is(err, vault.ErrNotFound) {
		if _, err := svc.CreateKey(asServer, none, PlatformVaultName, name, vault.CreateKeyParams{
			Kty: "RSA", Size: pmkSize, KeyOps: []string{"wrapKey", "unwrapKey"},
			Tags: map[string]string{"purpose": "coffer kms v2 platform-managed key", "cluster": cluster},
		}); err != nil {
			return "", fmt.Errorf("create key %s: %w", name, err)
		}
	} else if err != nil {
		return "", err
	}
	var pol vault.RotationPolicy
	rot := vault.LifetimeAction{}
	rot.Trigger.TimeAfterCreate = pmkRotation
	rot.Action.Type = "Rotate"
	pol.LifetimeActions = []vault.LifetimeAction{rot}
	if _, err := svc.SetRotationPolicy(asServer, none, PlatformVaultName, name, pol); err != nil {
		return "", fmt.Errorf("set the rotation policy of %s: %w", name, err)
	}
	if _, err := s.o.Policies.SetPolicy(ctx, PlatformVaultName, p.ID, []string{"get", "wrapKey", "unwrapKey"}); err != nil {
		return "", fmt.Errorf("grant %s the platform-managed key: %w", p.Name, err)
	}
	return s.o.PlatformVaultURL + "/keys/" + name, nil
}

// lock takes cluster name's lock, held by every replica on the database (store.DB.Lock):
// a change reads the stored settings, calls the vault (creating or probing a key) and
// writes the settings back whole, so two changes at once would otherwise each write what
// it read, losing the other's (a write key dropped from the decrypt-only keys loses the
// Secrets written under it).
func (s *Service) lock(ctx context.Context, name string) (func(), error) {
	unlock, err := s.o.DB.Lock(ctx, "kms/cluster/"+name)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	return unlock, nil
}

// Get returns a cluster's settings.
func (s *Service) Get(ctx context.Context, name string) (Cluster, error) { return s.st.get(ctx, name) }

// List returns every cluster.
func (s *Service) List(ctx context.Context) ([]Cluster, error) { return s.st.list(ctx) }

// Delete removes a cluster's settings. Its keys stay in their vaults (a PMK is not
// deleted: Secrets in a backup of etcd may still need it).
func (s *Service) Delete(ctx context.Context, caller identity.Principal, name string) error {
	unlock, err := s.lock(ctx, name)
	if err != nil {
		return err
	}
	err = s.st.delete(ctx, name)
	unlock()
	s.record(caller, "kms.cluster.delete", name, err)
	if err == nil {
		s.changed(ctx, name)
	}
	return err
}

// RotateNow makes a new version of the cluster's PMK. A CMK is rotated in its own vault.
func (s *Service) RotateNow(ctx context.Context, caller identity.Principal, name string) (Cluster, error) {
	c, err := s.st.get(ctx, name)
	if err != nil {
		return Cluster{}, err
	}
	if c.KeyManagement != PlatformManaged {
		return Cluster{}, fmt.Errorf("%w: cluster %s uses a customer-managed key: rotate it in its vault (coffer vault key rotate), then trigger the plugin's poll (coffer kms rotate-now --plugin-health URL, or SIGHUP)", ErrConflict, name)
	}
	id, _ := kek.ParseKeyID(c.KeyID)
	_, err = s.o.Vault.RotateKey(vault.AsServer(ctx), identity.Principal{}, PlatformVaultName, id.Name)
	s.record(caller, "kms.cluster.rotate", name, err)
	if err != nil {
		return Cluster{}, fmt.Errorf("rotate %s: %w", c.KeyID, err)
	}
	s.changed(ctx, name)
	return s.st.get(ctx, name)
}

// Retire marks every decrypt-only key retirable once the plugin reports writeKeyID as its
// key_id (every resource was rewritten under it by `coffer kms reencrypt`).
func (s *Service) Retire(ctx context.Context, caller identity.Principal, name, writeKeyID string) (Cluster, error) {
	unlock, err := s.lock(ctx, name)
	if err != nil {
		return Cluster{}, err
	}
	defer unlock()
	c, err := s.st.get(ctx, name)
	if err != nil {
		return Cluster{}, err
	}
	id, err := kek.ParseKeyID(writeKeyID)
	if err != nil || !strings.EqualFold(id.Versionless(), c.KeyID) {
		return Cluster{}, fmt.Errorf("%w: %s is not a version of the cluster's write key %s: nothing is retired", ErrConflict, writeKeyID, c.KeyID)
	}
	for i := range c.DecryptOnly {
		c.DecryptOnly[i].Retirable = true
	}
	c.Updated = time.Now().UTC()
	if err := s.st.put(ctx, c, false); err != nil {
		return Cluster{}, err
	}
	s.record(caller, "kms.cluster.retire", name, nil)
	return c, nil
}

// ---- the plugin's side: the caller is the cluster's identity ----

// pluginCluster returns the cluster if caller is its plugin identity.
func (s *Service) pluginCluster(ctx context.Context, caller identity.Principal, name string) (Cluster, error) {
	c, err := s.st.get(ctx, name)
	if err != nil {
		return Cluster{}, err
	}
	if caller.ID != c.IdentityID {
		return Cluster{}, fmt.Errorf("%w: %s is not the plugin identity of cluster %s", ErrForbidden, caller.Name, name)
	}
	return c, nil
}

// PluginSettings are the settings the plugin fetches.
func (s *Service) PluginSettings(ctx context.Context, caller identity.Principal, name string) (PluginSettings, error) {
	c, err := s.pluginCluster(ctx, caller, name)
	if err != nil {
		return PluginSettings{}, err
	}
	out := PluginSettings{WriteKey: c.KeyID, Access: AccessDirect, DecryptKeys: []string{}, ThroughCoffer: []string{}}
	if throughCoffer(c.KeyManagement, c.NetworkAccess) {
		out.Access = AccessCoffer
		out.ThroughCoffer = append(out.ThroughCoffer, c.KeyID)
	}
	for _, d := range c.DecryptOnly {
		out.DecryptKeys = append(out.DecryptKeys, d.KeyID)
		if throughCoffer(d.KeyManagement, d.KeyVaultNetworkAccess) {
			out.ThroughCoffer = append(out.ThroughCoffer, d.KeyID)
		}
	}
	return out, nil
}

// throughCoffer tells whether the plugin reaches a key through Coffer: a PMK always (the
// platform vault is Coffer's), a CMK when its network access is Private.
func throughCoffer(keyManagement, networkAccess string) bool {
	return keyManagement == PlatformManaged || networkAccess == NetworkPrivate
}

// Report stores the plugin's last Status.
func (s *Service) Report(ctx context.Context, caller identity.Principal, name string, r PluginStatus) error {
	c, err := s.pluginCluster(ctx, caller, name)
	if err != nil {
		return err
	}
	r.ReportedAt = time.Now().UTC()
	if len(r.Error) > 2000 {
		r.Error = r.Error[:2000]
	}
	return s.st.report(ctx, c.Name, r)
}

// pluginKEK is the in-process driver for the plugin, for a key of its cluster.
func (s *Service) pluginKEK(ctx context.Context, caller identity.Principal, name, keyID string) (kek.KEK, error) {
	c, err := s.pluginCluster(ctx, caller, name)
	if err != nil {
		return nil, err
	}
	id, err := kek.ParseKeyID(keyID)
	if err != nil {
		return nil, err
	}
	known := strings.EqualFold(id.Versionless(), c.KeyID)
	for _, d := range c.DecryptOnly {
		known = known || strings.EqualFold(id.Versionless(), d.KeyID)
	}
	if !known {
		return nil, &kek.Error{Op: "get", KeyID: keyID, Kind: kek.ErrNotFound, Detail: "not a key of cluster " + name}
	}
	return s.o.Resolver.ForPrincipal(ctx, caller, keyID)
}

// GetKey reads a key of the cluster as the plugin.
func (s *Service) GetKey(ctx context.Context, caller identity.Principal, name, keyID string) (kek.KeyInfo, error) {
	k, err := s.pluginKEK(ctx, caller, name, keyID)
	if err != nil {
		return kek.KeyInfo{}, err
	}
	return k.GetKey(ctx, keyID)
}

// WrapKey wraps a seed as the plugin.
func (s *Service) WrapKey(ctx context.Context, caller identity.Principal, name, keyID string, secret []byte) (string, []byte, error) {
	k, err := s.pluginKEK(ctx, caller, name, keyID)
	if err != nil {
		return "", nil, err
	}
	return k.WrapKey(ctx, keyID, secret)
}

// UnwrapKey unwraps a seed as the plugin.
func (s *Service) UnwrapKey(ctx context.Context, caller identity.Principal, name, kid string, wrapped []byte) ([]byte, error) {
	k, err := s.pluginKEK(ctx, caller, name, kid)
	if err != nil {
		return nil, err
	}
	return k.UnwrapKey(ctx, kid, wrapped)
}

// record audits a settings change.
func (s *Service) record(caller identity.Principal, op, cluster string, err error) {
	if s.o.Audit == nil {
		return
	}
	r := audit.Record{Component: "kms", PrincipalID: caller.ID, PrincipalName: caller.Name, PrincipalKind: string(caller.Kind),
		Operation: op, Target: cluster, Resource: "kms/clusters/" + cluster, Result: "success"}
	if err != nil {
		r.Result, r.Detail = "failure", err.Error()
	}
	s.o.Audit.Record(r)
}

// ---- storage ----

// clusterStore keeps the clusters' settings.
type clusterStore interface {
	migrate(ctx context.Context) error
	get(ctx context.Context, name string) (Cluster, error)
	list(ctx context.Context) ([]Cluster, error)
	put(ctx context.Context, c Cluster, create bool) error
	report(ctx context.Context, name string, st PluginStatus) error
	delete(ctx context.Context, name string) error
}

type sqlStore struct{ db *store.DB }

var migrations = []string{`CREATE TABLE kms_clusters (
	name TEXT PRIMARY KEY,
	doc TEXT NOT NULL,
	status TEXT NOT NULL DEFAULT '',
	updated_at INTEGER NOT NULL
)`}

func (s sqlStore) migrate(ctx context.Context) error { return s.db.Migrate(ctx, "kms", migrations) }

func (s sqlStore) get(ctx context.Context, name string) (Cluster, error) {
	var doc, status string
	err := s.db.QueryRowContext(ctx, `SELECT doc, status FROM kms_clusters WHERE name = ?`, name).Scan(&doc, &status)
	if errors.Is(err, sql.ErrNoRows) {
		return Cluster{}, fmt.Errorf("%w: %s (coffer kms cluster list shows the clusters)", ErrNotFound, name)
	}
	if err != nil {
		return Cluster{}, fmt.Errorf("read cluster %s: %w", name, err)
	}
	var c Cluster
	if err := json.Unmarshal([]byte(doc), &c); err != nil {
		return Cluster{}, fmt.Errorf("decode cluster %s: %w", name, err)
	}
	return withStatus(c, status), nil
}

func (s sqlStore) list(ctx context.Context) ([]Cluster, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT doc, status FROM kms_clusters ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	defer rows.Close()
	out := []Cluster{}
	for rows.Next() {
		var doc, status string
		if err := rows.Scan(&doc, &status); err != nil {
			return nil, err
		}
		var c Cluster
		if err := json.Unmarshal([]byte(doc), &c); err != nil {
			return nil, err
		}
		out = append(out, withStatus(c, status))
	}
	return out, rows.Err()
}

func (s sqlStore) put(ctx context.Context, c Cluster, create bool) error {
	doc, err := json.Marshal(c)
	if err != nil {
		return err
	}
	var res sql.Result
	if create {
		res, err = s.db.ExecContext(ctx, `INSERT INTO kms_clusters (name, doc, updated_at) VALUES (?, ?, ?)`, c.Name, string(doc), c.Updated.Unix())
	} else {
		res, err = s.db.ExecContext(ctx, `UPDATE kms_clusters SET doc = ?, updated_at = ? WHERE name = ?`, string(doc), time.Now().Unix(), c.Name)
	}
	if create && store.IsUniqueViolation(err) {
		return fmt.Errorf("%w: cluster %s already exists: use `coffer kms cluster update`", ErrConflict, c.Name)
	}
	if err != nil {
		return fmt.Errorf("store cluster %s: %w", c.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s (deleted meanwhile)", ErrNotFound, c.Name)
	}
	return nil
}

// withStatus sets the plugin's reported status, kept in a column of its own so that a report
// never overwrites a settings change made at the same time.
func withStatus(c Cluster, status string) Cluster {
	c.Status = nil
	if status != "" {
		var st PluginStatus
		if json.Unmarshal([]byte(status), &st) == nil {
			c.Status = &st
		}
	}
	return c
}

func (s sqlStore) report(ctx context.Context, name string, st PluginStatus) error {
	doc, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE kms_clusters SET status = ? WHERE name = ?`, string(doc), name); err != nil {
		return fmt.Errorf("store the plugin status of cluster %s: %w", name, err)
	}
	return nil
}

func (s sqlStore) delete(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM kms_clusters WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete cluster %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return nil
}
