// Package trust is Coffer's content trust: the Notary v1 (TUF) server behind Docker
// Content Trust, and the registry's content-trust policy.
//
// Validation is built on the TUF core of github.com/theupdateframework/notary (tuf,
// tuf/data, tuf/signed, tuf/validation, trustpinning), never on its server package. An
// update is checked as strictly as notary-server checks it: the root against the previous
// root's keys and its own (certificates whose CN is the GUN), targets and delegations
// against their signers, thresholds, expiry and paths, a client-sent snapshot against the
// bytes of every role it lists, and versions strictly increasing per role. The server
// always signs its own timestamp, and the snapshot when the client sends none.
//
// The server-held timestamp and snapshot keys are keys in a vault of this server; every
// signature is a vault sign call made as the registry's identity (vault.AsService), so it
// appears in the vault's audit trail, and no trust private key exists outside the vault.
// Metadata bytes go through the sealed blob driver (encrypted under the registry's key,
// unreadable when a customer-managed key is revoked); an SQL index names them.
//
// The package knows nothing of HTTP: trust/trustapi serves it on the registry listener.
package trust

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/theupdateframework/notary/trustpinning"
	"github.com/theupdateframework/notary/tuf"
	"github.com/theupdateframework/notary/tuf/data"
	"github.com/theupdateframework/notary/tuf/signed"
	"github.com/theupdateframework/notary/tuf/utils"
	"github.com/theupdateframework/notary/tuf/validation"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
)

// Policy statuses, as az acr config content-trust names them.
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"
)

// DefaultVaultName is the vault the server-held trust keys live in unless configured.
const DefaultVaultName = "coffer-trust"

// MaxMetadataSize bounds one role's metadata.
const MaxMetadataSize = 4 << 20

// Options configure a Service.
type Options struct {
	DB *store.DB
	// Blobs stores the metadata bytes: the sealing driver (required).
	Blobs blobstore.Driver
	// Vault holds the server-held keys (required); Grant gives Identity permissions there.
	Vault Vault
	Grant GrantFunc
	// Identity is the registry's identity: it signs in the vault.
	Identity identity.Principal
	// VaultName is the vault of the server-held keys (default coffer-trust).
	VaultName string
	// Lock, if set, takes a lock every replica shares (store.DB.Lock): one GUN's
	// updates and server-held key creation are serialised across replicas.
	Lock func(ctx context.Context, name string) (unlock func(), err error)
	// OwnHost says whether a GUN's host part ("host[:port]") names this registry.
	OwnHost func(hostport string) bool
	Now     func() time.Time
	Log     *slog.Logger
}

// Service is the trust server.
type Service struct {
	store     Store
	blobs     blobstore.Driver
	vault     Vault
	grant     GrantFunc
	ident     identity.Principal
	vaultName string
	ownHost   func(string) bool
	now       func() time.Time
	log       *slog.Logger

	vaultOnce  sync.Mutex
	vaultReady bool
	// gunLocks serialise updates of one GUN in this process, lockFn (Options.Lock) on
	// every replica (and the database refuses a second writer of the same version).
	gunLocks sync.Map
	lockFn   func(ctx context.Context, name string) (func(), error)
}

// Open migrates the trust tables and returns the service.
func Open(ctx context.Context, o Options) (*Service, error) {
	if o.DB == nil || o.Blobs == nil || o.Vault == nil || o.Grant == nil {
		return nil, errors.New("content trust needs a database, a blob driver and a vault")
	}
	st, err := newSQLStore(ctx, o.DB)
	if err != nil {
		return nil, fmt.Errorf("content trust: %w", err)
	}
	s := &Service{store: st, blobs: o.Blobs, vault: o.Vault, grant: o.Grant, ident: o.Identity,
		vaultName: o.VaultName, ownHost: o.OwnHost, now: o.Now, log: o.Log, lockFn: o.Lock}
	if s.vaultName == "" {
		s.vaultName = DefaultVaultName
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.ownHost == nil {
		s.ownHost = func(string) bool { return true }
	}
	return s, nil
}

// VaultName is the vault that holds the server-held keys.
func (s *Service) VaultName() string { return s.vaultName }

// Error is a trust API error: the notary error code, its HTTP status and the detail the
// notary client reads (a validation.SerializableError for INVALID_UPDATE).
type Error struct {
	Status  int
	Code    string
	Message string
	Detail  any
	err     error
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }
func (e *Error) Unwrap() error { return e.err }

// Notary error codes.
const (
	CodeMetadataNotFound = "METADATA_NOT_FOUND"
	CodeInvalidUpdate    = "INVALID_UPDATE"
	CodeVersion          = "VERSION"
	CodeInvalidRole      = "INVALID_ROLE"
	CodeMalformedUpload  = "MALFORMED_UPLOAD"
	CodeMalformedJSON    = "MALFORMED_JSON"
	CodeInvalidGUN       = "INVALID_GUN"
	CodeInvalidParams    = "INVALID_PARAMETERS"
	CodeDenied           = "DENIED"
)

func newErr(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrDisabled is wrapped by every trust call while content trust is disabled.
var ErrDisabled = errors.New("content trust is disabled for this registry: enable it with 'coffer registry config content-trust update --status enabled'")

func notFound(gun string, role data.RoleName) *Error {
	return newErr(http.StatusNotFound, CodeMetadataNotFound, "%s has no %s metadata: the repository does not have trust data", gun, role)
}

// invalidUpdate wraps a validation error in the shape the notary client unpacks.
func invalidUpdate(err error) *Error {
	e := newErr(http.StatusBadRequest, CodeInvalidUpdate, "%s", err.Error())
	if se, serr := validation.NewSerializableError(err); serr == nil {
		e.Detail = se
	}
	e.err = err
	return e
}

// storageErr maps a storage failure: a sealed object that may not be read (revoked key)
// is refused, not reported as missing.
func storageErr(err error) error {
	if errors.Is(err, blobstore.ErrAccessDenied) {
		return &Error{Status: http.StatusForbidden, Code: CodeDenied, Message: "the registry's encryption key is not accessible: trust data cannot be read or written: " + err.Error(), err: err}
	}
	return err
}

// CheckGUN refuses a GUN that is malformed or whose host is not one of this registry's
// names, and returns its repository.
func (s *Service) CheckGUN(gun string) (repo string, err error) {
	host, repo, err := SplitGUN(gun)
	if err != nil {
		return "", &Error{Status: http.StatusBadRequest, Code: CodeInvalidGUN, Message: err.Error()}
	}
	if !s.ownHost(host) {
		return "", newErr(http.StatusBadRequest, CodeInvalidGUN, "trusted collection %s names the registry host %s, which is not this registry: use this registry's host name (as in docker push HOST/%s)", clip(gun), clip(host), clip(repo))
	}
	return repo, nil
}

// Enabled reports whether content trust is on.
func (s *Service) Enabled(ctx context.Context) (bool, error) {
	st, err := s.store.Status(ctx)
	return st == StatusEnabled, err
}

func (s *Service) requireEnabled(ctx context.Context) error {
	on, err := s.Enabled(ctx)
	if err != nil {
		return err
	}
	if !on {
		return &Error{Status: http.StatusNotFound, Code: CodeMetadataNotFound, Message: ErrDisabled.Error(), err: ErrDisabled}
	}
	return nil
}

// lock takes gun's lock: every replica's when Options.Lock is set.
func (s *Service) lock(ctx context.Context, gun string) (func(), error) {
	if s.lockFn != nil {
		return s.lockFn(ctx, "trust/gun/"+gun)
	}
	m, _ := s.gunLocks.LoadOrStore(gun, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock, nil
}

func blobPath(gun, sha string) string {
	h := sha256.Sum256([]byte(gun))
	return "trust/" + hex.EncodeToString(h[:]) + "/" + sha
}

func (s *Service) putBlob(ctx context.Context, gun string, b []byte) (string, error) {
	sum := sha256.Sum256(b)
	sha := hex.EncodeToString(sum[:])
	w, err := s.blobs.Writer(ctx, blobPath(gun, sha))
	if err != nil {
		return "", storageErr(err)
	}
	defer w.Close()
	if _, err := w.Write(b); err != nil {
		w.Cancel(ctx)
		return "", storageErr(err)
	}
	if err := w.Commit(ctx); err != nil {
		return "", storageErr(err)
	}
	return sha, nil
}

func (s *Service) readBlob(ctx context.Context, m MetaRow) ([]byte, error) {
	r, err := s.blobs.Reader(ctx, blobPath(m.GUN, m.SHA256), 0)
	if err != nil {
		return nil, storageErr(fmt.Errorf("read %s %s metadata: %w", m.GUN, m.Role, err))
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, MaxMetadataSize+1))
	if err != nil {
		return nil, storageErr(fmt.Errorf("read %s %s metadata: %w", m.GUN, m.Role, err))
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != m.SHA256 {
		return nil, fmt.Errorf("stored %s metadata of %s does not match its checksum", m.Role, m.GUN)
	}
	return b, nil
}

// current returns the bytes of the newest version of role, or store.ErrNotFound.
func (s *Service) current(ctx context.Context, gun string, role data.RoleName) ([]byte, MetaRow, error) {
	m, err := s.store.Current(ctx, gun, role.String())
	if err != nil {
		return nil, m, err
	}
	b, err := s.readBlob(ctx, m)
	return b, m, err
}

// Part is one role's metadata in an update.
type Part struct {
	Role data.RoleName
	Data []byte
}

// Update validates and stores an atomic update of gun: every part is checked, the server
// signs a snapshot (when none was sent) and a timestamp, and all is committed or nothing.
func (s *Service) Update(ctx context.Context, gun string, parts []Part) error {
	if err := s.requireEnabled(ctx); err != nil {
		return err
	}
	repo, err := s.CheckGUN(gun)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return newErr(http.StatusBadRequest, CodeMalformedUpload, "the update holds no metadata")
	}
	roles := map[data.RoleName][]byte{}
	versions := map[data.RoleName]int{}
	for _, p := range parts {
		if err := CheckRole(p.Role); err != nil {
			return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRole, Message: err.Error()}
		}
		if _, dup := roles[p.Role]; dup {
			return newErr(http.StatusBadRequest, CodeMalformedUpload, "role %s appears twice in the update", p.Role)
		}
		var meta data.SignedMeta
		if err := json.Unmarshal(p.Data, &meta); err != nil {
			return newErr(http.StatusBadRequest, CodeMalformedJSON, "the %s metadata is not valid JSON: %v", p.Role, err)
		}
		if p.Role == data.CanonicalTimestampRole {
			continue // the server always signs its own timestamp
		}
		roles[p.Role] = p.Data
		versions[p.Role] = meta.Signed.Version
	}
	unlock, err := s.lock(ctx, gun)
	if err != nil {
		return err
	}
	defer unlock()

	ks := keyService{ctx: ctx, s: s, gun: gun}
	builder := tuf.NewRepoBuilder(data.GUN(gun), ks, trustpinning.TrustPinConfig{})
	stored := map[data.RoleName][]byte{}
	load := func(role data.RoleName) error {
		b, _, err := s.current(ctx, gun, role)
		if err != nil {
			return err
		}
		stored[role] = b
		return builder.Load(role, b, 1, true)
	}
	if err := load(data.CanonicalRootRole); err != nil && !errors.Is(err, store.ErrNotFound) {
		return storageErr(err)
	}
	if rootBytes, ok := roles[data.CanonicalRootRole]; ok {
		cur := builder.GetLoadedVersion(data.CanonicalRootRole)
		if v, loaded := versions[data.CanonicalRootRole], builder.IsLoaded(data.CanonicalRootRole); loaded && v <= cur {
			// A lower version, or the stored one again, is a rollback (as for every role).
			return &Error{Status: http.StatusBadRequest, Code: CodeVersion, Message: fmt.Sprintf("a newer version of metadata is already available: root version %d, stored %d", v, cur)}
		} else if loaded && v != cur+1 {
			return invalidUpdate(validation.ErrBadRoot{Msg: fmt.Sprintf("root modifications must increment the version: current %d, new %d", cur, v)})
		}
		builder = builder.BootstrapNewBuilder()
		if err := builder.Load(data.CanonicalRootRole, rootBytes, cur, false); err != nil {
			return invalidUpdate(validation.ErrBadRoot{Msg: err.Error()})
		}
	} else if !builder.IsLoaded(data.CanonicalRootRole) {
		return invalidUpdate(validation.ErrValidation{Msg: "no pre-existing root and no root provided in update"})
	}

	// Targets and delegations, parents first.
	var targetRoles utils.RoleList
	for r := range roles {
		if r == data.CanonicalTargetsRole || data.IsDelegation(r) {
			targetRoles = append(targetRoles, r.String())
		}
	}
	sort.Sort(targetRoles)
	for _, rs := range targetRoles {
		role := data.RoleName(rs)
		var parents []data.RoleName
		for a := role; a != data.CanonicalTargetsRole; {
			a = a.Parent()
			if !builder.IsLoaded(a) {
				parents = append(parents, a)
			}
		}
		for i := len(parents) - 1; i >= 0; i-- {
			if err := load(parents[i]); err != nil && !errors.Is(err, store.ErrNotFound) {
				if _, ok := roles[parents[i]]; !ok {
					return storageErr(err)
				}
			}
		}
		if err := builder.Load(role, roles[role], 1, false); err != nil {
			return invalidUpdate(validation.ErrBadTargets{Msg: err.Error()})
		}
		if data.IsDelegation(role) {
			fetch := func(r data.RoleName) ([]byte, error) {
				if b, ok := roles[r]; ok {
					return b, nil
				}
				if b, ok := stored[r]; ok {
					return b, nil
				}
				b, _, err := s.current(ctx, gun, r)
				return b, err
			}
			if err := checkDelegatedPaths(role, roles[role], fetch); err != nil {
				return invalidUpdate(validation.ErrBadTargets{Msg: err.Error()})
			}
		}
	}

	rootBytes, ok := roles[data.CanonicalRootRole]
	if !ok {
		rootBytes = stored[data.CanonicalRootRole]
	}
	root, err := parseRoot(rootBytes)
	if err != nil {
		return invalidUpdate(validation.ErrBadRoot{Msg: err.Error()})
	}
	updates := map[data.RoleName][]byte{}
	for r, b := range roles {
		if r != data.CanonicalSnapshotRole {
			updates[r] = b
		}
	}
	if snap, ok := roles[data.CanonicalSnapshotRole]; ok {
		if err := builder.Load(data.CanonicalSnapshotRole, snap, 1, false); err != nil {
			return invalidUpdate(validation.ErrBadSnapshot{Msg: err.Error()})
		}
		if err := s.checkSnapshotAgainstStored(ctx, gun, snap, roles); err != nil {
			return err
		}
		updates[data.CanonicalSnapshotRole] = snap
	} else {
		var prev *data.SignedSnapshot
		if b, _, err := s.current(ctx, gun, data.CanonicalSnapshotRole); err == nil {
			prev = new(data.SignedSnapshot)
			if err := json.Unmarshal(b, prev); err != nil {
				return fmt.Errorf("stored snapshot of %s: %w", gun, err)
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return storageErr(err)
		}
		changed := map[data.RoleName][]byte{data.CanonicalRootRole: rootBytes}
		for r, b := range updates {
			changed[r] = b
		}
		if prev == nil {
			if _, ok := changed[data.CanonicalTargetsRole]; !ok {
				b, _, err := s.current(ctx, gun, data.CanonicalTargetsRole)
				if errors.Is(err, store.ErrNotFound) {
					return invalidUpdate(validation.ErrBadHierarchy{Missing: data.CanonicalTargetsRole.String(), Msg: "the first update of a collection must hold its targets"})
				}
				if err != nil {
					return storageErr(err)
				}
				changed[data.CanonicalTargetsRole] = b
			}
		}
		b, err := s.signSnapshot(ks, root, prev, changed)
		if err != nil {
			return signErr(err, data.CanonicalSnapshotRole)
		}
		updates[data.CanonicalSnapshotRole] = b
	}
	var prevTS *data.SignedTimestamp
	if b, _, err := s.current(ctx, gun, data.CanonicalTimestampRole); err == nil {
		prevTS = new(data.SignedTimestamp)
		if err := json.Unmarshal(b, prevTS); err != nil {
			return fmt.Errorf("stored timestamp of %s: %w", gun, err)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return storageErr(err)
	}
	ts, err := s.signTimestamp(ks, root, updates[data.CanonicalSnapshotRole], prevTS)
	if err != nil {
		return signErr(err, data.CanonicalTimestampRole)
	}
	updates[data.CanonicalTimestampRole] = ts
	return s.commit(ctx, gun, repo, updates)
}

// signErr maps a failure to sign a server-managed role.
func signErr(err error, role data.RoleName) error {
	var e1 signed.ErrInsufficientSignatures
	var e2 signed.ErrNoKeys
	var e3 signed.ErrRoleThreshold
	if errors.As(err, &e1) || errors.As(err, &e2) || errors.As(err, &e3) {
		if role == data.CanonicalSnapshotRole {
			return invalidUpdate(validation.ErrBadHierarchy{Missing: role.String(), Msg: "no snapshot was included in update and server does not hold current snapshot key for repository"})
		}
		return invalidUpdate(validation.ErrBadRoot{Msg: "no timestamp keys exist on the server: the root must name the key from timestamp.key"})
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var te *Error
	if errors.As(err, &te) {
		return te
	}
	return fmt.Errorf("sign the %s: %w", role, err)
}

// checkDelegatedPaths refuses a delegation that lists a target, or delegates a path,
// outside the paths its ancestors delegated to it. fetch returns a targets role's bytes
// (uploaded, else stored).
func checkDelegatedPaths(role data.RoleName, raw []byte, fetch func(data.RoleName) ([]byte, error)) error {
	var st data.SignedTargets
	if err := json.Unmarshal(raw, &st); err != nil {
		return err
	}
	granted, err := delegatedRole(role, fetch)
	if err != nil {
		return err
	}
	for name := range st.Signed.Targets {
		if !granted.CheckPaths(name) {
			return fmt.Errorf("%s lists target %q outside its delegated paths %v", role, name, granted.Paths)
		}
	}
	for _, child := range st.Signed.Delegations.Roles {
		for _, p := range child.Paths {
			if !granted.CheckPaths(p) {
				return fmt.Errorf("%s delegates path %q to %s outside its own delegated paths %v", role, p, child.Name, granted.Paths)
			}
		}
	}
	return nil
}

// delegatedRole is role as its ancestors delegate it: its paths restricted by each
// ancestor's.
func delegatedRole(role data.RoleName, fetch func(data.RoleName) ([]byte, error)) (data.DelegationRole, error) {
	var chain []data.RoleName
	for r := role; r != data.CanonicalTargetsRole; r = r.Parent() {
		chain = append([]data.RoleName{r}, chain...)
	}
	var cur data.DelegationRole
	parent := data.CanonicalTargetsRole
	for i, r := range chain {
		b, err := fetch(parent)
		if err != nil {
			return cur, fmt.Errorf("%s is delegated by %s, which is not available: %w", r, parent, err)
		}
		var pt data.SignedTargets
		if err := json.Unmarshal(b, &pt); err != nil {
			return cur, err
		}
		var found *data.Role
		for _, d := range pt.Signed.Delegations.Roles {
			if d.Name == r {
				found = d
				break
			}
		}
		if found == nil {
			return cur, fmt.Errorf("%s does not delegate to %s", parent, r)
		}
		next := data.DelegationRole{BaseRole: data.BaseRole{Name: r, Threshold: found.Threshold}, Paths: found.Paths}
		if i > 0 {
			if next, err = cur.Restrict(next); err != nil {
				return cur, err
			}
		}
		cur, parent = next, r
	}
	return cur, nil
}

// checkSnapshotAgainstStored refuses a client snapshot whose hash of a role that was not
// uploaded differs from the stored current version of that role (mix-and-match).
func (s *Service) checkSnapshotAgainstStored(ctx context.Context, gun string, snap []byte, uploaded map[data.RoleName][]byte) error {
	var sn data.SignedSnapshot
	if err := json.Unmarshal(snap, &sn); err != nil {
		return invalidUpdate(validation.ErrBadSnapshot{Msg: err.Error()})
	}
	for name, fm := range sn.Signed.Meta {
		role := data.RoleName(name)
		b, ok := uploaded[role]
		if !ok {
			var err error
			b, _, err = s.current(ctx, gun, role)
			if errors.Is(err, store.ErrNotFound) {
				return invalidUpdate(validation.ErrBadSnapshot{Msg: fmt.Sprintf("snapshot lists %s, which is neither uploaded nor stored", role)})
			}
			if err != nil {
				return storageErr(err)
			}
		}
		if err := data.CheckHashes(b, name, fm.Hashes); err != nil {
			return invalidUpdate(validation.ErrBadSnapshot{Msg: err.Error()})
		}
	}
	return nil
}

// commit stores every role's bytes sealed, then indexes them in one transaction.
func (s *Service) commit(ctx context.Context, gun, repo string, updates map[data.RoleName][]byte) error {
	now := s.now().Unix()
	var rows []MetaRow
	var tsRow MetaRow
	for role, b := range updates {
		if len(b) > MaxMetadataSize {
			return newErr(http.StatusBadRequest, CodeMalformedUpload, "%s metadata is %d bytes, at most %d", role, len(b), MaxMetadataSize)
		}
		var meta data.SignedMeta
		if err := json.Unmarshal(b, &meta); err != nil {
			return newErr(http.StatusBadRequest, CodeMalformedJSON, "%s: %v", role, err)
		}
		sha, err := s.putBlob(ctx, gun, b)
		if err != nil {
			return err
		}
		r := MetaRow{GUN: gun, Repo: repo, Role: role.String(), Version: meta.Signed.Version, SHA256: sha, Length: int64(len(b)), Created: now}
		rows = append(rows, r)
		if role == data.CanonicalTimestampRole {
			tsRow = r
		}
	}
	// Root first, timestamp last: a reader never sees a timestamp before what it names.
	sort.SliceStable(rows, func(i, j int) bool { return roleOrder(rows[i].Role) < roleOrder(rows[j].Role) })
	err := s.store.Commit(ctx, rows, Change{GUN: gun, Version: tsRow.Version, SHA256: tsRow.SHA256, Category: "update", Created: now})
	if errors.Is(err, ErrOldVersion) {
		return &Error{Status: http.StatusBadRequest, Code: CodeVersion, Message: "a newer version of metadata is already available: " + err.Error(), err: err}
	}
	return err
}

func roleOrder(r string) int {
	switch data.RoleName(r) {
	case data.CanonicalRootRole:
		return 0
	case data.CanonicalSnapshotRole:
		return 2
	case data.CanonicalTimestampRole:
		return 3
	}
	return 1
}

// Meta is metadata served to a client, with what its cache headers need.
type Meta struct {
	Data     []byte
	SHA256   string
	Modified time.Time
	// Consistent is set for checksum- and version-addressed reads, which never change.
	Consistent bool
}

// Get returns the current metadata of role. timestamp.json is re-signed when it (or the
// server-managed snapshot it names) has expired or names an older snapshot; snapshot.json
// is the one the current timestamp names.
func (s *Service) Get(ctx context.Context, gun string, role data.RoleName) (Meta, error) {
	if err := s.requireEnabled(ctx); err != nil {
		return Meta{}, err
	}
	if _, err := s.CheckGUN(gun); err != nil {
		return Meta{}, err
	}
	switch role {
	case data.CanonicalTimestampRole:
		return s.timestamp(ctx, gun)
	case data.CanonicalSnapshotRole:
		ts, err := s.timestamp(ctx, gun)
		if err != nil {
			return Meta{}, err
		}
		var st data.SignedTimestamp
		if err := json.Unmarshal(ts.Data, &st); err != nil {
			return Meta{}, err
		}
		h := st.Signed.Meta[data.CanonicalSnapshotRole.String()].Hashes["sha256"]
		return s.byChecksum(ctx, gun, role, hex.EncodeToString(h), false)
	}
	b, m, err := s.current(ctx, gun, role)
	if errors.Is(err, store.ErrNotFound) {
		return Meta{}, notFound(gun, role)
	}
	if err != nil {
		return Meta{}, storageErr(err)
	}
	return Meta{Data: b, SHA256: m.SHA256, Modified: time.Unix(m.Created, 0)}, nil
}

// GetChecksum returns role's metadata whose SHA-256 is sha.
func (s *Service) GetChecksum(ctx context.Context, gun string, role data.RoleName, sha string) (Meta, error) {
	return s.getBy(ctx, gun, role, func() (MetaRow, error) { return s.store.ByChecksum(ctx, gun, role.String(), sha) })
}

// GetVersion returns version v of role's metadata.
func (s *Service) GetVersion(ctx context.Context, gun string, role data.RoleName, v int) (Meta, error) {
	return s.getBy(ctx, gun, role, func() (MetaRow, error) { return s.store.ByVersion(ctx, gun, role.String(), v) })
}

// getBy serves a checksum- or version-addressed file, which never changes.
func (s *Service) getBy(ctx context.Context, gun string, role data.RoleName, lookup func() (MetaRow, error)) (Meta, error) {
	if err := s.requireEnabled(ctx); err != nil {
		return Meta{}, err
	}
	if _, err := s.CheckGUN(gun); err != nil {
		return Meta{}, err
	}
	return s.serveRow(gun, role, lookup, true)(ctx)
}

func (s *Service) byChecksum(ctx context.Context, gun string, role data.RoleName, sha string, consistent bool) (Meta, error) {
	return s.serveRow(gun, role, func() (MetaRow, error) { return s.store.ByChecksum(ctx, gun, role.String(), sha) }, consistent)(ctx)
}

// serveRow reads the metadata the row lookup finds.
func (s *Service) serveRow(gun string, role data.RoleName, lookup func() (MetaRow, error), consistent bool) func(context.Context) (Meta, error) {
	return func(ctx context.Context) (Meta, error) {
		m, err := lookup()
		if errors.Is(err, store.ErrNotFound) {
			return Meta{}, notFound(gun, role)
		}
		if err != nil {
			return Meta{}, err
		}
		b, err := s.readBlob(ctx, m)
		if err != nil {
			return Meta{}, storageErr(err)
		}
		return Meta{Data: b, SHA256: m.SHA256, Modified: time.Unix(m.Created, 0), Consistent: consistent}, nil
	}
}

// timestamp returns the current timestamp, signing a new one when the stored one has
// expired, names a snapshot that is not the newest, or names a server-managed snapshot
// that has expired.
func (s *Service) timestamp(ctx context.Context, gun string) (Meta, error) {
	tsBytes, tsRow, err := s.current(ctx, gun, data.CanonicalTimestampRole)
	if errors.Is(err, store.ErrNotFound) {
		return Meta{}, notFound(gun, data.CanonicalTimestampRole)
	}
	if err != nil {
		return Meta{}, storageErr(err)
	}
	fresh, err := s.timestampFresh(ctx, gun, tsBytes)
	if err != nil {
		return Meta{}, err
	}
	if fresh {
		return Meta{Data: tsBytes, SHA256: tsRow.SHA256, Modified: time.Unix(tsRow.Created, 0)}, nil
	}
	if err := s.resign(ctx, gun); err != nil {
		return Meta{}, err
	}
	tsBytes, tsRow, err = s.current(ctx, gun, data.CanonicalTimestampRole)
	if err != nil {
		return Meta{}, storageErr(err)
	}
	return Meta{Data: tsBytes, SHA256: tsRow.SHA256, Modified: time.Unix(tsRow.Created, 0)}, nil
}

func (s *Service) timestampFresh(ctx context.Context, gun string, tsBytes []byte) (bool, error) {
	var ts data.SignedTimestamp
	if err := json.Unmarshal(tsBytes, &ts); err != nil {
		return false, fmt.Errorf("stored timestamp of %s: %w", gun, err)
	}
	if !s.now().Before(ts.Signed.Expires) {
		return false, nil
	}
	snRow, err := s.store.Current(ctx, gun, data.CanonicalSnapshotRole.String())
	if err != nil {
		return false, storageErr(err)
	}
	if hex.EncodeToString(ts.Signed.Meta[data.CanonicalSnapshotRole.String()].Hashes["sha256"]) != snRow.SHA256 {
		return false, nil
	}
	snBytes, err := s.readBlob(ctx, snRow)
	if err != nil {
		return false, storageErr(err)
	}
	var sn data.SignedSnapshot
	if err := json.Unmarshal(snBytes, &sn); err != nil {
		return false, err
	}
	if !s.now().Before(sn.Signed.Expires) && s.holdsKey(ctx, gun, data.CanonicalSnapshotRole) {
		return false, nil
	}
	return true, nil
}

func (s *Service) holdsKey(ctx context.Context, gun string, role data.RoleName) bool {
	keys, err := s.store.Keys(ctx, gun, role.String())
	return err == nil && len(keys) > 0
}

// resign signs a new timestamp (and, when it has expired and the server holds its key, a
// new snapshot) over the stored metadata.
func (s *Service) resign(ctx context.Context, gun string) error {
	unlock, err := s.lock(ctx, gun)
	if err != nil {
		return err
	}
	defer unlock()
	repo, err := s.CheckGUN(gun)
	if err != nil {
		return err
	}
	tsBytes, _, err := s.current(ctx, gun, data.CanonicalTimestampRole)
	if err != nil {
		return storageErr(err)
	}
	if fresh, err := s.timestampFresh(ctx, gun, tsBytes); err != nil || fresh {
		return err // another request re-signed it meanwhile
	}
	ks := keyService{ctx: ctx, s: s, gun: gun}
	builder := tuf.NewRepoBuilder(data.GUN(gun), ks, trustpinning.TrustPinConfig{})
	rootBytes, _, err := s.current(ctx, gun, data.CanonicalRootRole)
	if err != nil {
		return storageErr(err)
	}
	if err := builder.Load(data.CanonicalRootRole, rootBytes, 1, true); err != nil {
		return fmt.Errorf("stored root of %s: %w", gun, err)
	}
	root, err := parseRoot(rootBytes)
	if err != nil {
		return err
	}
	snBytes, _, err := s.current(ctx, gun, data.CanonicalSnapshotRole)
	if err != nil {
		return storageErr(err)
	}
	var sn data.SignedSnapshot
	if err := json.Unmarshal(snBytes, &sn); err != nil {
		return err
	}
	updates := map[data.RoleName][]byte{}
	if !s.now().Before(sn.Signed.Expires) && s.holdsKey(ctx, gun, data.CanonicalSnapshotRole) {
		b, err := s.signSnapshot(ks, root, &sn, nil)
		if err != nil {
			return signErr(err, data.CanonicalSnapshotRole)
		}
		updates[data.CanonicalSnapshotRole] = b
		snBytes = b
	}
	var prev data.SignedTimestamp
	if err := json.Unmarshal(tsBytes, &prev); err != nil {
		return err
	}
	b, err := s.signTimestamp(ks, root, snBytes, &prev)
	if err != nil {
		return signErr(err, data.CanonicalTimestampRole)
	}
	updates[data.CanonicalTimestampRole] = b
	return s.commit(ctx, gun, repo, updates)
}

// Key returns the newest server-held key of role (timestamp or snapshot) for gun,
// creating one in the vault on first use.
func (s *Service) Key(ctx context.Context, gun string, role data.RoleName) ([]byte, error) {
	if err := s.requireEnabled(ctx); err != nil {
		return nil, err
	}
	repo, err := s.CheckGUN(gun)
	if err != nil {
		return nil, err
	}
	unlock, err := s.lock(ctx, gun)
	if err != nil {
		return nil, err
	}
	defer unlock()
	keys, err := s.store.Keys(ctx, gun, role.String())
	if err != nil {
		return nil, err
	}
	if len(keys) > 0 {
		return []byte(keys[0].Public), nil
	}
	row, _, err := s.newVaultKey(ctx, gun, repo, role)
	if err != nil {
		return nil, err
	}
	return []byte(row.Public), nil
}

// RotateKey creates a new server-held key for role; the old one keeps signing until a
// root that names the new one is published.
func (s *Service) RotateKey(ctx context.Context, gun string, role data.RoleName) ([]byte, error) {
	if err := s.requireEnabled(ctx); err != nil {
		return nil, err
	}
	repo, err := s.CheckGUN(gun)
	if err != nil {
		return nil, err
	}
	unlock, err := s.lock(ctx, gun)
	if err != nil {
		return nil, err
	}
	defer unlock()
	row, _, err := s.newVaultKey(ctx, gun, repo, role)
	if err != nil {
		return nil, err
	}
	return []byte(row.Public), nil
}

// Delete removes all trust data of gun and its server-held keys.
func (s *Service) Delete(ctx context.Context, gun string) error {
	if err := s.requireEnabled(ctx); err != nil {
		return err
	}
	if _, err := s.CheckGUN(gun); err != nil {
		return err
	}
	unlock, err := s.lock(ctx, gun)
	if err != nil {
		return err
	}
	defer unlock()
	return s.deleteWhere(ctx, gun, "")
}

// DeleteRepository removes the trust data of every GUN of repo (a registry hook: the
// repository was deleted). It works whether content trust is enabled or not.
func (s *Service) DeleteRepository(ctx context.Context, repo string) error {
	return s.deleteWhere(ctx, "", repo)
}

func (s *Service) deleteWhere(ctx context.Context, gun, repo string) error {
	keys, metas, err := s.store.DeleteGUNs(ctx, gun, repo, Change{Category: "deletion", Created: s.now().Unix()})
	if err != nil {
		return err
	}
	for _, m := range metas {
		s.blobs.Delete(ctx, blobPath(m.GUN, m.SHA256))
	}
	s.deleteVaultKeys(ctx, keys)
	return nil
}

// Wiped is what disabling content trust deleted.
type Wiped struct {
	Collections int
	Metadata    int
	Keys        int
}

// SetStatus turns content trust on or off. Turning it off deletes every repository's
// trust data and every server-held key, irreversibly.
func (s *Service) SetStatus(ctx context.Context, status string) (Wiped, error) {
	var w Wiped
	if status != StatusEnabled && status != StatusDisabled {
		return w, fmt.Errorf("content trust status %q: want %s or %s", status, StatusEnabled, StatusDisabled)
	}
	if status == StatusDisabled {
		keys, metas, err := s.store.DeleteAll(ctx)
		if err != nil {
			return w, err
		}
		guns := map[string]bool{}
		for _, m := range metas {
			guns[m.GUN] = true
			s.blobs.Delete(ctx, blobPath(m.GUN, m.SHA256))
		}
		// Anything left under trust/ (an interrupted write) goes too.
		var left []string
		s.blobs.Walk(ctx, "trust/", func(i blobstore.Info) error { left = append(left, i.Path); return nil })
		for _, p := range left {
			s.blobs.Delete(ctx, p)
		}
		s.deleteVaultKeys(ctx, keys)
		w = Wiped{Collections: len(guns), Metadata: len(metas), Keys: len(keys)}
	}
	if err := s.store.SetStatus(ctx, status, s.now().Unix()); err != nil {
		return w, err
	}
	return w, nil
}

// Status is the content-trust policy.
func (s *Service) Status(ctx context.Context) (string, error) { return s.store.Status(ctx) }

// ChangeRecord is one changefeed entry as notary-server answers it.
type ChangeRecord struct {
	ID        string    `json:"ID"`
	CreatedAt time.Time `json:"CreatedAt"`
	GUN       string    `json:"GUN"`
	Version   int       `json:"Version"`
	SHA256    string    `json:"SHA256"`
	Category  string    `json:"Category"`
}

// Changefeed lists changes after change (or, with records < 0, before it; "-1" is the
// newest end), for one GUN or (gun empty) every GUN.
func (s *Service) Changefeed(ctx context.Context, gun, change, records string) ([]ChangeRecord, error) {
	if err := s.requireEnabled(ctx); err != nil {
		return nil, err
	}
	if gun != "" {
		if _, err := s.CheckGUN(gun); err != nil {
			return nil, err
		}
	}
	n, err := strconv.Atoi(records)
	if err != nil || n == 0 || n > 100 || n < -100 {
		return nil, newErr(http.StatusBadRequest, CodeInvalidParams, "records must be a non-zero number between -100 and 100, not %q", clip(records))
	}
	if change == "" {
		change = "0"
	}
	id, err := strconv.ParseInt(change, 10, 64)
	if err != nil || id < -1 {
		return nil, newErr(http.StatusBadRequest, CodeInvalidParams, "change must be a change ID, 0 (the start) or -1 (the end), not %q", clip(change))
	}
	reverse := n < 0
	if reverse {
		n = -n
		if id <= 0 {
			id = 1 << 62
		}
	} else if id < 0 {
		id = 1 << 62
	}
	cs, err := s.store.Changes(ctx, gun, id, n, reverse)
	if err != nil {
		return nil, err
	}
	out := make([]ChangeRecord, 0, len(cs))
	for _, c := range cs {
		out = append(out, ChangeRecord{ID: strconv.FormatInt(c.ID, 10), CreatedAt: time.Unix(c.Created, 0).UTC(), GUN: c.GUN, Version: c.Version, SHA256: c.SHA256, Category: c.Category})
	}
	if reverse {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out, nil
}

// HashOf is the hex SHA-256 of b.
func HashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
