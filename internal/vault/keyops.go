package vault

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/identity"
	dbstore "github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

const maxTags = 15

func validateTags(tags map[string]string) error {
	if len(tags) > maxTags {
		return fmt.Errorf("%w: at most %d tags", ErrInvalid, maxTags)
	}
	for k, v := range tags {
		if k == "" || len(k) > 512 || len(v) > 512 {
			return fmt.Errorf("%w: tag names must be 1-512 characters and values at most 512", ErrInvalid)
		}
	}
	return nil
}

// checkDates refuses a validity window that no moment is inside: a key usable from nbf on
// and no longer at exp (Unix seconds, 0 = none) needs nbf before exp.
func checkDates(nbf, exp int64) error {
	if nbf != 0 && exp != 0 && nbf >= exp {
		return fmt.Errorf("%w: the key's nbf (%s) is not before its exp (%s): it could never be used; give a not-before date earlier than the expiry",
			ErrInvalid, time.Unix(nbf, 0).UTC().Format(time.RFC3339), time.Unix(exp, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

func unixOrZero(t *time.Time) int64 {
	if t == nil || t.IsZero() {
		return 0
	}
	return t.Unix()
}

// newVersion seals material and inserts a version of vault/name (creating the key row when
// needed). name is exact: key names are case-insensitive, so a key whose name differs from
// name only in case is a conflict, not a key to add a version to (its users would get the
// new version as its newest) nor one to create beside it.
//
// ref, when not empty, is the HSM object holding the material: full is then its public
// part, sealed with the reference (key_hsm), so the row's reference is authenticated.
//
// after, when not empty, is the version that must still be the key's newest (a rotation
// by policy, which every replica's lifecycle run may decide at once): if another version
// was added since, nothing is stored and the error is errRotatedMeanwhile.
//
// Everything it decides on is read inside its transaction (the vault, the key row, the
// next sequence number), so concurrent callers on any replica cannot both take one
// sequence number, add a key to a vault being deleted, or both rotate for one trigger.
func (s *Service) newVersion(ctx context.Context, vault, name string, full keys.JWK, ref string, ops []string, enabled bool, nbf, exp int64, tags map[string]string, after string) (versionRow, error) {
	version := newVersionID()
	sealedJWK := full
	if ref != "" {
		sealedJWK.KeyHSM = []byte(ref)
	}
	plain := jsonMarshal(sealedJWK)
	sealed := seal(s.sealer.material, plain, materialAAD(vault, name, version))
	clear(plain)
	now := s.now().Unix()
	if tags == nil {
		tags = map[string]string{}
	}
	row := versionRow{Vault: vault, Name: name, Version: version, Kty: full.Kty, KeyOps: ops, Public: full.Public(),
		Sealed: sealed, Enabled: enabled, NBF: nbf, Exp: exp, Created: now, Updated: now, Tags: tags, HSM: ref}
	row.Public.Kid, row.Public.KeyOps = "", nil
	store := func(tx *sql.Tx) error {
		if _, err := getVaultRow(ctx, tx, vault); err != nil {
			return err
		}
		rows, err := getKeyRows(ctx, tx, vault, name)
		if err != nil {
			return err
		}
		var k keyRow
		i, err := keyByName(rows, vault, name)
		if err == nil && rows[i].Name != name {
			return fmt.Errorf("%w: key %q already exists in vault %q as %q: key names are case-insensitive, so %q names that key; to add a version to it use its name %q",
				ErrConflict, name, vault, rows[i].Name, name, rows[i].Name)
		}
		if err == nil {
			k = rows[i]
		}
		switch {
		case errors.Is(err, ErrNotFound):
			if after != "" {
				return errRotatedMeanwhile
			}
			k = keyRow{Vault: vault, Name: name, NextSeq: 1}
			if _, err := tx.ExecContext(ctx, `INSERT INTO vault_keys (vault, name, next_seq) VALUES (?, ?, 1)`, vault, name); err != nil {
				return fmt.Errorf("store key: %w", err)
			}
		case err != nil:
			return err
		case k.Deleted != 0:
			return fmt.Errorf("%w: key %q is in a deleted but recoverable state: recover or purge it first", ErrConflict, name)
		}
		if after != "" {
			var newest string
			err := tx.QueryRowContext(ctx, `SELECT version FROM vault_key_versions WHERE vault = ? AND name = ? ORDER BY seq DESC LIMIT 1`, vault, name).Scan(&newest)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("read key versions: %w", err)
			}
			if newest != after {
				return errRotatedMeanwhile
			}
		}
		row.Seq = k.NextSeq
		res, err := tx.ExecContext(ctx, `UPDATE vault_keys SET next_seq = ? WHERE vault = ? AND name = ? AND next_seq = ?`, k.NextSeq+1, vault, name, k.NextSeq)
		if err != nil {
			return fmt.Errorf("store key: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("store key: the key's next version number changed under the transaction")
		}
		return insertVersion(ctx, tx, row)
	}
	err := s.db.InTx(ctx, store)
	// Two callers creating one new key at once (on PostgreSQL, where both may find no row
	// before either inserts it): the one refused by the key's primary key runs again and
	// adds its version to the key the other made.
	for attempt := 0; attempt < 3 && dbstore.IsUniqueViolation(err); attempt++ {
		err = s.db.InTx(ctx, store)
	}
	s.forgetKey(vault, name)
	if err == nil {
		s.newKeyVersion(vault, row.Name)
	}
	return row, err
}

// errRotatedMeanwhile: a rotation by policy found that the key got a new version since it
// decided (another replica's lifecycle run rotated it): the trigger has been served.
var errRotatedMeanwhile = errors.New("the key was rotated meanwhile")

// enterNewVersion admits a call that adds a key version (create, import): the vault
// exists, the name is valid, the caller may do action on the vault, the tags are valid.
func (s *Service) enterNewVersion(ctx context.Context, caller identity.Principal, vault, name string, action access.Action, tags map[string]string) (Vault, error) {
	v, err := s.vault(ctx, vault)
	if err != nil {
		return Vault{}, err
	}
	if err := ValidKeyName(name); err != nil {
		return Vault{}, err
	}
	if err := s.authorize(ctx, caller, v, action, access.VaultScope(vault), true); err != nil {
		return Vault{}, err
	}
	if err := validateTags(tags); err != nil {
		return Vault{}, err
	}
	return v, nil
}

// opsFor is the key_ops of a new version: the given ones, or the key type's default, checked
// against what the type can do.
func opsFor(kty string, given []string) ([]string, error) {
	ops := given
	if len(ops) == 0 {
		ops = keys.DefaultOps(kty)
	}
	if err := keys.ValidateOps(kty, ops); err != nil {
		return nil, err
	}
	return ops, nil
}

// CreateKey creates a key (or a new version of an existing key, as Key Vault does).
func (s *Service) CreateKey(ctx context.Context, caller identity.Principal, vault, name string, p CreateKeyParams) (_ Key, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyCreate", target: vault + "/keys/" + name, res: resource(vault, name), start: s.now(), sync: true}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.enterNewVersion(ctx, caller, vault, name, access.KeyCreate, p.Tags)
	if err != nil {
		return Key{}, err
	}
	if err := checkDates(unixOrZero(p.NotBefore), unixOrZero(p.Expires)); err != nil {
		return Key{}, err
	}
	ops, err := opsFor(p.Kty, p.KeyOps)
	if err != nil {
		return Key{}, err
	}
	full, ref, err := s.generate(ctx, v, name, keys.CreateSpec{Kty: p.Kty, Size: p.Size, Curve: p.Curve, PublicExponent: p.PublicExponent})
	if err != nil {
		return Key{}, err
	}
	enabled := p.Enabled == nil || *p.Enabled
	row, err := s.newVersion(ctx, vault, name, full, ref, ops, enabled, unixOrZero(p.NotBefore), unixOrZero(p.Expires), p.Tags, "")
	if err != nil {
		return Key{}, err
	}
	k := s.toKey(ctx, v, row)
	e.target = k.ID
	return k, nil
}

// ImportKey imports key material given as a JWK (a new version when the key exists).
func (s *Service) ImportKey(ctx context.Context, caller identity.Principal, vault, name string, p ImportKeyParams) (_ Key, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyImport", target: vault + "/keys/" + name, res: resource(vault, name), start: s.now(), sync: true}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.enterNewVersion(ctx, caller, vault, name, access.KeyImport, p.Tags)
	if err != nil {
		return Key{}, err
	}
	if err := checkDates(unixOrZero(p.NotBefore), unixOrZero(p.Expires)); err != nil {
		return Key{}, err
	}
	j := p.JWK
	if keys.BaseKty(j.Kty) == "" {
		return Key{}, fmt.Errorf("%w: key type %q is not supported", ErrInvalid, j.Kty)
	}
	if p.HSM {
		switch keys.BaseKty(j.Kty) {
		case keys.KtyRSA:
			j.Kty = keys.KtyRSAHSM
		case keys.KtyEC:
			j.Kty = keys.KtyECHSM
		case keys.KtyOct:
			j.Kty = keys.KtyOctHSM
		}
	}
	if len(j.KeyHSM) > 0 {
		return Key{}, fmt.Errorf("%w: key_hsm (a BYOK transfer blob) is not supported: import the key's private members, or create the key in an HSM vault", ErrInvalid)
	}
	if s.inHSM(v, j.Kty) {
		return Key{}, fmt.Errorf("%w: vault %q keeps %s keys in its HSM, where they are generated: a key that existed outside the token cannot be imported as HSM-protected (create it in the vault, or import it as %s)",
			ErrInvalid, vault, j.Kty, keys.BaseKty(j.Kty))
	}
	m, err := keys.Parse(j)
	if err != nil {
		return Key{}, err
	}
	if !m.Private() {
		return Key{}, fmt.Errorf("%w: the imported key has no private part (d, or k for oct)", ErrInvalid)
	}
	ops, err := opsFor(j.Kty, j.KeyOps)
	if err != nil {
		return Key{}, err
	}
	j.Kid, j.KeyOps = "", nil
	enabled := p.Enabled == nil || *p.Enabled
	row, err := s.newVersion(ctx, vault, name, j, "", ops, enabled, unixOrZero(p.NotBefore), unixOrZero(p.Expires), p.Tags, "")
	if err != nil {
		return Key{}, err
	}
	k := s.toKey(ctx, v, row)
	e.target = k.ID
	return k, nil
}

// GetKey returns a key version (version "" = the newest) with public material only.
func (s *Service) GetKey(ctx context.Context, caller identity.Principal, vault, name, version string) (_ Key, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyGet", target: vault + "/keys/" + name + "/" + version, res: resource(vault, name), start: s.now()}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.enter(ctx, caller, vault, access.KeyGet, access.KeyScope(vault, name), true)
	if err != nil {
		return Key{}, err
	}
	c, err := s.liveVersionKey(ctx, vault, name, version)
	if err != nil {
		return Key{}, err
	}
	e.res = resource(vault, c.row.Name)
	r, err := pick(c, version, false)
	if err != nil {
		return Key{}, err
	}
	k := s.toKey(ctx, v, r)
	e.target = k.ID
	return k, nil
}

// UpdateKey changes a version's attributes, key_ops and tags (version "" = the newest).
func (s *Service) UpdateKey(ctx context.Context, caller identity.Principal, vault, name, version string, p UpdateKeyParams) (_ Key, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyUpdate", target: vault + "/keys/" + name + "/" + version, res: resource(vault, name), start: s.now(), sync: true}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.enter(ctx, caller, vault, access.KeyUpdate, access.KeyScope(vault, name), true)
	if err != nil {
		return Key{}, err
	}
	s.forgetKey(vault, name)
	c, err := s.liveKey(ctx, vault, name)
	if err != nil {
		return Key{}, err
	}
	picked, err := pick(c, version, false)
	if err != nil {
		return Key{}, err
	}
	if p.KeyOps != nil {
		if err := keys.ValidateOps(picked.Kty, p.KeyOps); err != nil {
			return Key{}, err
		}
	}
	if p.Tags != nil {
		if err := validateTags(*p.Tags); err != nil {
			return Key{}, err
		}
	}
	// The version is read again inside the write: two updates of one version at once
	// (on any replica) each change what they name and keep the other's change.
	var r versionRow
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if r, err = getVersionRow(ctx, tx, vault, picked.Name, picked.Version); err != nil {
			return err
		}
		if p.KeyOps != nil {
			r.KeyOps = slices.Clone(p.KeyOps)
		}
		if p.Enabled != nil {
			r.Enabled = *p.Enabled
		}
		if p.NotBefore != nil {
			r.NBF = unixOrZero(p.NotBefore)
		}
		if p.Expires != nil {
			r.Exp = unixOrZero(p.Expires)
		}
		if err := checkDates(r.NBF, r.Exp); err != nil {
			return err
		}
		if p.Tags != nil {
			r.Tags = maps.Clone(*p.Tags)
		}
		r.Updated = s.now().Unix()
		return updateVersionRow(ctx, tx, r)
	})
	if err != nil {
		return Key{}, err
	}
	s.forgetKey(vault, name)
	k := s.toKey(ctx, v, r)
	e.target = k.ID
	return k, nil
}

// PageSize is the largest page a listing returns.
const PageSize = 25

func pageBounds(maxResults int, skip string) (int, string, error) {
	if maxResults <= 0 || maxResults > PageSize {
		maxResults = PageSize
	}
	after := ""
	if skip != "" {
		b, err := base64.RawURLEncoding.DecodeString(skip)
		if err != nil {
			return 0, "", fmt.Errorf("%w: bad $skiptoken", ErrInvalid)
		}
		after = string(b)
	}
	return maxResults, after, nil
}

func skipToken(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func (s *Service) listKeyNames(ctx context.Context, vault string, deleted bool, after string, limit int) ([]string, bool, error) {
	cond := "deleted = 0"
	if deleted {
		cond = "deleted <> 0"
	}
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM vault_keys WHERE vault = ? AND `+cond+` AND name > ? ORDER BY name LIMIT ?`, vault, after, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("list keys: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, false, err
		}
		names = append(names, n)
	}
	more := len(names) > limit
	if more {
		names = names[:limit]
	}
	return names, more, rows.Err()
}

// ListKeys lists the vault's keys (each as its newest version), a page at a time.
func (s *Service) ListKeys(ctx context.Context, caller identity.Principal, vault string, maxResults int, skip string) (_ Page[Key], err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyList", target: vault, res: resource(vault, ""), start: s.now()}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.enter(ctx, caller, vault, access.KeyList, access.VaultScope(vault), true)
	if err != nil {
		return Page[Key]{}, err
	}
	limit, after, err := pageBounds(maxResults, skip)
	if err != nil {
		return Page[Key]{}, err
	}
	names, more, err := s.listKeyNames(ctx, vault, false, after, limit)
	if err != nil {
		return Page[Key]{}, err
	}
	page := Page[Key]{Items: []Key{}}
	for _, n := range names {
		c, err := s.liveKey(ctx, vault, n)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return Page[Key]{}, err
		}
		r, _ := pick(c, "", false)
		page.Items = append(page.Items, s.toKey(ctx, v, r))
	}
	if more && len(names) > 0 {
		page.Next = skipToken(names[len(names)-1])
	}
	return page, nil
}

// ListKeyVersions lists a key's versions, oldest first, a page at a time.
func (s *Service) ListKeyVersions(ctx context.Context, caller identity.Principal, vault, name string, maxResults int, skip string) (_ Page[Key], err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyListVersions", target: vault + "/keys/" + name, res: resource(vault, name), start: s.now()}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.enter(ctx, caller, vault, access.KeyList, access.KeyScope(vault, name), true)
	if err != nil {
		return Page[Key]{}, err
	}
	limit, after, err := pageBounds(maxResults, skip)
	if err != nil {
		return Page[Key]{}, err
	}
	c, err := s.liveKey(ctx, vault, name)
	if err != nil {
		return Page[Key]{}, err
	}
	var afterSeq int64
	if after != "" {
		afterSeq, err = strconv.ParseInt(after, 10, 64)
		if err != nil {
			return Page[Key]{}, fmt.Errorf("%w: bad $skiptoken", ErrInvalid)
		}
	}
	page := Page[Key]{Items: []Key{}}
	for _, r := range c.versions {
		if r.Seq <= afterSeq {
			continue
		}
		if len(page.Items) == limit {
			page.Next = skipToken(strconv.FormatInt(page.Items[len(page.Items)-1].seq(c), 10))
			break
		}
		page.Items = append(page.Items, s.toKey(ctx, v, r))
	}
	return page, nil
}

// seq finds the sequence number of k's version in c.
func (k Key) seq(c *cachedKey) int64 {
	for _, r := range c.versions {
		if r.Version == k.Version {
			return r.Seq
		}
	}
	return 0
}

// RotateKey creates a new version with the newest version's type, size, key_ops and tags;
// its expiry follows the rotation policy's expiryTime.
func (s *Service) RotateKey(ctx context.Context, caller identity.Principal, vault, name string) (_ Key, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyRotate", target: vault + "/keys/" + name, res: resource(vault, name), start: s.now(), sync: true}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.enter(ctx, caller, vault, access.KeyRotate, access.KeyScope(vault, name), true)
	if err != nil {
		return Key{}, err
	}
	k, err := s.rotate(ctx, v, name, "")
	if err == nil {
		e.target = k.ID
	}
	return k, err
}

// rotate adds a version like the newest one. after, when not empty (a rotation by policy),
// is the version the trigger was found due for: if the newest is another one, by the time
// this reads it or writes, another replica served the trigger (errRotatedMeanwhile).
func (s *Service) rotate(ctx context.Context, v Vault, name, after string) (Key, error) {
	s.forgetKey(v.Name, name)
	c, err := s.liveKey(ctx, v.Name, name)
	if err != nil {
		return Key{}, err
	}
	cur, _ := pick(c, "", false)
	if after != "" && cur.Version != after {
		return Key{}, errRotatedMeanwhile
	}
	spec := keys.CreateSpec{Kty: cur.Kty}
	switch keys.BaseKty(cur.Kty) {
	case keys.KtyRSA:
		m, err := keys.Parse(cur.Public)
		if err != nil {
			return Key{}, err
		}
		spec.Size = m.Size()
	case keys.KtyEC:
		spec.Curve = cur.Public.Crv
	case keys.KtyOct:
		// An oct key has no public part (Parse refuses it): its size is the sealed material's.
		full, err := s.material(ctx, cur)
		if err != nil {
			return Key{}, err
		}
		spec.Size = full.Size()
	}
	full, ref, err := s.generate(ctx, v, c.row.Name, spec)
	if err != nil {
		return Key{}, err
	}
	var exp int64
	if pol, err := decodePolicy(c.row.Policy); err == nil && pol.Attributes.ExpiryTime != "" {
		if d, err := parseISODuration(pol.Attributes.ExpiryTime); err == nil {
			exp = s.now().Add(d).Unix()
		}
	}
	row, err := s.newVersion(ctx, v.Name, c.row.Name, full, ref, cur.KeyOps, true, 0, exp, maps.Clone(cur.Tags), after)
	if errors.Is(err, errRotatedMeanwhile) {
		s.destroyHSMObjects(ctx, []versionRow{{Vault: v.Name, Name: c.row.Name, HSM: ref}})
	}
	if err != nil {
		return Key{}, err
	}
	return s.toKey(ctx, v, row), nil
}

func decodePolicy(raw string) (RotationPolicy, error) {
	var p RotationPolicy
	if raw == "" {
		return p, ErrNotFound
	}
	err := jsonUnmarshal([]byte(raw), &p)
	return p, err
}

// GetRotationPolicy returns the key's rotation policy (the default one, Notify 30 days
// before expiry, when none was set).
func (s *Service) GetRotationPolicy(ctx context.Context, caller identity.Principal, vault, name string) (_ RotationPolicy, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyGetRotationPolicy", target: vault + "/keys/" + name, res: resource(vault, name), start: s.now()}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.enter(ctx, caller, vault, access.KeyGetRotationPolicy, access.KeyScope(vault, name), true)
	if err != nil {
		return RotationPolicy{}, err
	}
	c, err := s.liveKey(ctx, vault, name)
	if err != nil {
		return RotationPolicy{}, err
	}
	p, err := decodePolicy(c.row.Policy)
	if err != nil {
		p = RotationPolicy{}
		la := LifetimeAction{}
		la.Trigger.TimeBeforeExpiry = "P30D"
		la.Action.Type = "Notify"
		p.LifetimeActions = []LifetimeAction{la}
	}
	p.ID = v.URL + "/keys/" + c.row.Name + "/rotationpolicy"
	if b := s.baseURL(ctx, v); b != "" {
		p.ID = b + "/keys/" + c.row.Name + "/rotationpolicy"
	}
	return p, nil
}

// SetRotationPolicy validates and stores a rotation policy.
func (s *Service) SetRotationPolicy(ctx context.Context, caller identity.Principal, vault, name string, p RotationPolicy) (_ RotationPolicy, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeySetRotationPolicy", target: vault + "/keys/" + name, res: resource(vault, name), start: s.now(), sync: true}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.enter(ctx, caller, vault, access.KeySetRotationPolicy, access.KeyScope(vault, name), true)
	if err != nil {
		return RotationPolicy{}, err
	}
	if len(p.LifetimeActions) > 2 {
		return RotationPolicy{}, fmt.Errorf("%w: at most one Rotate and one Notify lifetime action", ErrInvalid)
	}
	seen := map[string]bool{}
	for i, la := range p.LifetimeActions {
		t := la.Action.Type
		switch {
		case equalFold(t, "rotate"):
			t = "Rotate"
		case equalFold(t, "notify"):
			t = "Notify"
		default:
			return RotationPolicy{}, fmt.Errorf("%w: lifetime action type %q must be Rotate or Notify", ErrInvalid, la.Action.Type)
		}
		if seen[t] {
			return RotationPolicy{}, fmt.Errorf("%w: more than one %s action", ErrInvalid, t)
		}
		seen[t] = true
		p.LifetimeActions[i].Action.Type = t
		a, b := la.Trigger.TimeAfterCreate, la.Trigger.TimeBeforeExpiry
		if (a == "") == (b == "") {
			return RotationPolicy{}, fmt.Errorf("%w: a trigger needs exactly one of timeAfterCreate and timeBeforeExpiry", ErrInvalid)
		}
		for _, d := range []string{a, b} {
			if d != "" {
				if _, err := parseISODuration(d); err != nil {
					return RotationPolicy{}, err
				}
			}
		}
		if t == "Notify" && a != "" {
			return RotationPolicy{}, fmt.Errorf("%w: a Notify action takes timeBeforeExpiry", ErrInvalid)
		}
	}
	if p.Attributes.ExpiryTime != "" {
		if _, err := parseISODuration(p.Attributes.ExpiryTime); err != nil {
			return RotationPolicy{}, err
		}
	}
	s.forgetKey(vault, name)
	c, err := s.liveKey(ctx, vault, name)
	if err != nil {
		return RotationPolicy{}, err
	}
	now := s.now().UTC().Truncate(time.Second)
	p.Attributes.Updated = now
	p.ID = ""
	if p.LifetimeActions == nil {
		p.LifetimeActions = []LifetimeAction{}
	}
	// The stored policy (whose creation time the new one keeps) is read inside the write.
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		k, err := getKeyRow(ctx, tx, vault, c.row.Name)
		if err != nil {
			return err
		}
		if k.Deleted != 0 {
			return fmt.Errorf("%w: key %q does not exist in vault %q", ErrNotFound, name, vault)
		}
		p.Attributes.Created = now
		if old, err := decodePolicy(k.Policy); err == nil {
			p.Attributes.Created = old.Attributes.Created
		}
		_, err = tx.ExecContext(ctx, `UPDATE vault_keys SET policy = ? WHERE vault = ? AND name = ?`, string(jsonMarshal(p)), vault, k.Name)
		return err
	})
	if err != nil {
		s.forgetKey(vault, name)
		if errors.Is(err, ErrNotFound) {
			return RotationPolicy{}, err
		}
		return RotationPolicy{}, fmt.Errorf("store rotation policy: %w", err)
	}
	s.forgetKey(vault, name)
	p.ID = s.baseURL(ctx, v) + "/keys/" + c.row.Name + "/rotationpolicy"
	return p, nil
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
