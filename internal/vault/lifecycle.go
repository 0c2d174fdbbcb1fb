package vault

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

func (s *Service) toDeleted(ctx context.Context, v Vault, c *cachedKey) DeletedKey {
	r, _ := pick(c, "", false)
	d := DeletedKey{Key: s.toKey(ctx, v, r)}
	base := s.baseURL(ctx, v)
	d.RecoveryID = base + "/deletedkeys/" + c.row.Name
	d.DeletedDate = time.Unix(c.row.Deleted, 0).UTC()
	d.ScheduledPurgeDate = time.Unix(c.row.PurgeAt, 0).UTC()
	return d
}

// DeleteKey soft-deletes a key with all its versions. It can be recovered until its
// scheduled purge date (the vault's retention).
func (s *Service) DeleteKey(ctx context.Context, caller identity.Principal, vault, name string) (_ DeletedKey, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyDelete", target: vault + "/keys/" + name, res: resource(vault, name), start: s.now(), sync: true}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.enter(ctx, caller, vault, access.KeyDelete, access.KeyScope(vault, name), true)
	if err != nil {
		return DeletedKey{}, err
	}
	s.forgetKey(vault, name)
	live, err := s.liveKey(ctx, vault, name)
	if err != nil {
		return DeletedKey{}, err
	}
	name = live.row.Name
	now := s.now()
	purgeAt := now.Add(time.Duration(v.SoftDeleteRetentionDays) * 24 * time.Hour)
	res, err := s.db.ExecContext(ctx, `UPDATE vault_keys SET deleted = ?, purge_at = ? WHERE vault = ? AND name = ? AND deleted = 0`,
		now.Unix(), purgeAt.Unix(), vault, name)
	if err != nil {
		return DeletedKey{}, fmt.Errorf("delete key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return DeletedKey{}, fmt.Errorf("%w: key %q does not exist in vault %q", ErrNotFound, name, vault)
	}
	s.forgetKey(vault, name)
	c, err := s.loadKey(ctx, vault, name)
	if err != nil {
		return DeletedKey{}, err
	}
	return s.toDeleted(ctx, v, c), nil
}

func (s *Service) deletedKey(ctx context.Context, vault, name string) (*cachedKey, error) {
	c, err := s.loadKey(ctx, vault, name)
	if err != nil {
		return nil, err
	}
	if c.row.Deleted == 0 {
		return nil, fmt.Errorf("%w: key %q is not deleted", ErrNotFound, name)
	}
	return c, nil
}

// GetDeletedKey returns a soft-deleted key.
func (s *Service) GetDeletedKey(ctx context.Context, caller identity.Principal, vault, name string) (_ DeletedKey, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyGetDeleted", target: vault + "/keys/" + name, res: resource(vault, name), start: s.now()}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.enter(ctx, caller, vault, access.KeyGet, access.KeyScope(vault, name), true)
	if err != nil {
		return DeletedKey{}, err
	}
	s.forgetKey(vault, name)
	c, err := s.deletedKey(ctx, vault, name)
	if err != nil {
		return DeletedKey{}, err
	}
	return s.toDeleted(ctx, v, c), nil
}

// ListDeletedKeys lists soft-deleted keys.
func (s *Service) ListDeletedKeys(ctx context.Context, caller identity.Principal, vault string, maxResults int, skip string) (_ Page[DeletedKey], err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyListDeleted", target: vault, res: resource(vault, ""), start: s.now()}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.enter(ctx, caller, vault, access.KeyList, access.VaultScope(vault), true)
	if err != nil {
		return Page[DeletedKey]{}, err
	}
	limit, after, err := pageBounds(maxResults, skip)
	if err != nil {
		return Page[DeletedKey]{}, err
	}
	names, more, err := s.listKeyNames(ctx, vault, true, after, limit)
	if err != nil {
		return Page[DeletedKey]{}, err
	}
	page := Page[DeletedKey]{Items: []DeletedKey{}}
	for _, n := range names {
		s.forgetKey(vault, n)
		c, err := s.deletedKey(ctx, vault, n)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return page, err
		}
		page.Items = append(page.Items, s.toDeleted(ctx, v, c))
	}
	if more && len(names) > 0 {
		page.Next = skipToken(names[len(names)-1])
	}
	return page, nil
}

// RecoverDeletedKey brings a soft-deleted key back with all its versions.
func (s *Service) RecoverDeletedKey(ctx context.Context, caller identity.Principal, vault, name string) (_ Key, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyRecover", target: vault + "/keys/" + name, res: resource(vault, name), start: s.now(), sync: true}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.enter(ctx, caller, vault, access.KeyRecover, access.KeyScope(vault, name), true)
	if err != nil {
		return Key{}, err
	}
	s.forgetKey(vault, name)
	del, err := s.deletedKey(ctx, vault, name)
	if err != nil {
		return Key{}, err
	}
	name = del.row.Name
	res, err := s.db.ExecContext(ctx, `UPDATE vault_keys SET deleted = 0, purge_at = 0 WHERE vault = ? AND name = ? AND deleted <> 0`, vault, name)
	if err != nil {
		return Key{}, fmt.Errorf("recover key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Key{}, fmt.Errorf("%w: deleted key %q does not exist in vault %q", ErrNotFound, name, vault)
	}
	s.forgetKey(vault, name)
	c, err := s.liveKey(ctx, vault, name)
	if err != nil {
		return Key{}, err
	}
	r, _ := pick(c, "", false)
	return s.toKey(ctx, v, r), nil
}

// PurgeDeletedKey destroys a soft-deleted key for good. Refused while the vault's purge
// protection holds it (until its scheduled purge date).
func (s *Service) PurgeDeletedKey(ctx context.Context, caller identity.Principal, vault, name string) (err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyPurge", target: vault + "/keys/" + name, res: resource(vault, name), start: s.now(), sync: true}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.vault(ctx, vault)
	if err != nil {
		return err
	}
	if err := s.authorize(ctx, caller, v, access.KeyPurge, access.KeyScope(vault, name), true); err != nil {
		return err
	}
	s.forgetKey(vault, name)
	c, err := s.deletedKey(ctx, vault, name)
	if err != nil {
		return err
	}
	if v.EnablePurgeProtection && s.now().Unix() < c.row.PurgeAt {
		return fmt.Errorf("%w: vault %q has purge protection: key %q can only be purged after %s",
			ErrPurgeProtected, vault, name, time.Unix(c.row.PurgeAt, 0).UTC().Format(time.RFC3339))
	}
	return s.purge(ctx, vault, c)
}

// purge destroys the deleted key c of vault.
func (s *Service) purge(ctx context.Context, vault string, c *cachedKey) error {
	name := c.row.Name
	// The key row first, and only while it is still deleted: a key recovered (or purged)
	// since c was read keeps its versions, and only one purge destroys them.
	var versions []versionRow
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM vault_keys WHERE vault = ? AND name = ? AND deleted <> 0`, vault, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: deleted key %q does not exist in vault %q", ErrNotFound, name, vault)
		}
		if versions, err = listVersionRows(ctx, tx, vault, name); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM vault_key_versions WHERE vault = ? AND name = ?`, vault, name)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		s.forgetKey(vault, name)
		return err
	}
	if err != nil {
		return fmt.Errorf("purge key: %w", err)
	}
	s.forgetKey(vault, name)
	s.forgetMaterial(vault, name, versions)
	s.destroyHSMObjects(ctx, versions)
	return nil
}

// backupMagic starts every backup blob.
var backupMagic = []byte("COFFER-KEY-BACKUP-1\n")

type backupVersion struct {
	Version string            `json:"version"`
	Seq     int64             `json:"seq"`
	JWK     keys.JWK          `json:"jwk"`
	KeyOps  []string          `json:"keyOps"`
	Enabled bool              `json:"enabled"`
	NBF     int64             `json:"nbf"`
	Exp     int64             `json:"exp"`
	Created int64             `json:"created"`
	Updated int64             `json:"updated"`
	Tags    map[string]string `json:"tags"`
}

type backupBody struct {
	Name     string          `json:"name"`
	Policy   string          `json:"policy"`
	Versions []backupVersion `json:"versions"`
}

// BackupKey returns an opaque blob holding every version of the key, encrypted and
// authenticated under a key derived from the vault root key: only a Coffer vault with the
// same root key can restore it.
func (s *Service) BackupKey(ctx context.Context, caller identity.Principal, vault, name string) (_ []byte, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyBackup", target: vault + "/keys/" + name, res: resource(vault, name), start: s.now(), sync: true}
	defer func() { s.record(ctx, caller, e, err) }()
	if _, err := s.enter(ctx, caller, vault, access.KeyBackup, access.KeyScope(vault, name), true); err != nil {
		return nil, err
	}
	s.forgetKey(vault, name)
	c, err := s.liveKey(ctx, vault, name)
	if err != nil {
		return nil, err
	}
	body := backupBody{Name: c.row.Name, Policy: c.row.Policy}
	for _, r := range c.versions {
		if r.HSM != "" {
			return nil, fmt.Errorf("%w: key %q (version %s) lives in the vault's HSM and its material cannot leave the token: backups of HSM-protected keys are refused; keep the token's own backup instead (docs/hsm.md)",
				ErrOperationNotAllowed, c.row.Name, r.Version)
		}
	}
	for _, r := range c.versions {
		plain, err := open(s.sealer.material, r.Sealed, materialAAD(r.Vault, r.Name, r.Version))
		if err != nil {
			return nil, fmt.Errorf("unseal key %s/%s: %w", name, r.Version, err)
		}
		var j keys.JWK
		if err := jsonUnmarshal(plain, &j); err != nil {
			return nil, err
		}
		body.Versions = append(body.Versions, backupVersion{Version: r.Version, Seq: r.Seq, JWK: j, KeyOps: r.KeyOps,
			Enabled: r.Enabled, NBF: r.NBF, Exp: r.Exp, Created: r.Created, Updated: r.Updated, Tags: r.Tags})
	}
	plain := jsonMarshal(body)
	blob := append(append([]byte{}, backupMagic...), seal(s.sealer.backup, plain, backupMagic)...)
	clear(plain)
	return blob, nil
}

// RestoreKey restores a backup into vault, under its original name and versions. The name
// must be free (not live, not soft-deleted).
func (s *Service) RestoreKey(ctx context.Context, caller identity.Principal, vault string, blob []byte) (_ Key, err error) {
	vault = foldVault(vault)
	e := auditEntry{op: "KeyRestore", target: vault, res: resource(vault, ""), start: s.now(), sync: true}
	defer func() { s.record(ctx, caller, e, err) }()
	v, err := s.enter(ctx, caller, vault, access.KeyRestore, access.VaultScope(vault), true)
	if err != nil {
		return Key{}, err
	}
	if !bytes.HasPrefix(blob, backupMagic) {
		return Key{}, fmt.Errorf("%w: not a Coffer key backup", ErrInvalid)
	}
	plain, err := open(s.sealer.backup, blob[len(backupMagic):], backupMagic)
	if err != nil {
		return Key{}, fmt.Errorf("%w: the backup does not authenticate: it was altered or made by a vault with another root key", ErrInvalid)
	}
	var body backupBody
	if err := jsonUnmarshal(plain, &body); err != nil || ValidKeyName(body.Name) != nil || len(body.Versions) == 0 {
		return Key{}, fmt.Errorf("%w: the backup is malformed", ErrInvalid)
	}
	clear(plain)
	e.target = vault + "/keys/" + body.Name
	var rows []versionRow
	var maxSeq int64
	for _, bv := range body.Versions {
		if _, err := keys.Parse(bv.JWK); err != nil {
			return Key{}, fmt.Errorf("%w: the backup holds a bad key: %v", ErrInvalid, err)
		}
		r := versionRow{Vault: vault, Name: body.Name, Version: bv.Version, Seq: bv.Seq, Kty: bv.JWK.Kty, KeyOps: bv.KeyOps,
			Public: bv.JWK.Public(), Enabled: bv.Enabled, NBF: bv.NBF, Exp: bv.Exp, Created: bv.Created, Updated: bv.Updated, Tags: bv.Tags}
		r.Public.Kid, r.Public.KeyOps = "", nil
		if r.Tags == nil {
			r.Tags = map[string]string{}
		}
		r.Sealed = seal(s.sealer.material, jsonMarshal(bv.JWK), materialAAD(vault, body.Name, bv.Version))
		rows = append(rows, r)
		maxSeq = max(maxSeq, bv.Seq)
	}
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := getVaultRow(ctx, tx, vault); err != nil {
			return err
		}
		taken, err := getKeyRows(ctx, tx, vault, body.Name)
		if err != nil {
			return err
		}
		if len(taken) > 0 {
			also := ""
			if taken[0].Name != body.Name {
				also = fmt.Sprintf(" as %q (key names are case-insensitive)", taken[0].Name)
			}
			return fmt.Errorf("%w: key %q already exists in vault %q%s (perhaps deleted): purge it before restoring", ErrConflict, body.Name, vault, also)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO vault_keys (vault, name, policy, next_seq) VALUES (?, ?, ?, ?)`,
			vault, body.Name, body.Policy, maxSeq+1); err != nil {
			if store.IsUniqueViolation(err) {
				return fmt.Errorf("%w: key %q was created in vault %q while it was being restored: purge it before restoring", ErrConflict, body.Name, vault)
			}
			return err
		}
		for _, r := range rows {
			if err := insertVersion(ctx, tx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Key{}, err
	}
	s.forgetKey(vault, body.Name)
	c, err := s.liveKey(ctx, vault, body.Name)
	if err != nil {
		return Key{}, err
	}
	r, _ := pick(c, "", false)
	return s.toKey(ctx, v, r), nil
}

// RunLifecycle carries out rotation policies (Rotate and Notify actions) and purges
// deleted keys whose retention has passed. The server runs it every minute.
func (s *Service) RunLifecycle(ctx context.Context) error {
	now := s.now()
	system := identity.Principal{Name: "coffer-server"}
	ctx = AsServer(ctx)
	// Purge expired deleted keys.
	rows, err := s.db.QueryContext(ctx, `SELECT vault, name FROM vault_keys WHERE deleted <> 0 AND purge_at <= ?`, now.Unix())
	if err != nil {
		return fmt.Errorf("find keys to purge: %w", err)
	}
	type vk struct{ vault, name string }
	var expired []vk
	for rows.Next() {
		var x vk
		if err := rows.Scan(&x.vault, &x.name); err == nil {
			expired = append(expired, x)
		}
	}
	rows.Close()
	for _, x := range expired {
		s.forgetKey(x.vault, x.name)
		c, err := s.deletedKey(ctx, x.vault, x.name)
		if err != nil {
			continue
		}
		start := s.now()
		err = s.purge(ctx, x.vault, c)
		if errors.Is(err, ErrNotFound) {
			continue // purged (or recovered) meanwhile, by a request or another replica's run
		}
		s.record(ctx, system, auditEntry{op: "KeyPurgeScheduled", target: x.vault + "/keys/" + x.name, res: resource(x.vault, x.name), start: start, sync: true}, err)
	}
	// Rotation policies.
	rows, err = s.db.QueryContext(ctx, `SELECT vault, name FROM vault_keys WHERE deleted = 0 AND policy <> ''`)
	if err != nil {
		return fmt.Errorf("find rotation policies: %w", err)
	}
	var withPolicy []vk
	for rows.Next() {
		var x vk
		if err := rows.Scan(&x.vault, &x.name); err == nil {
			withPolicy = append(withPolicy, x)
		}
	}
	rows.Close()
	for _, x := range withPolicy {
		if err := s.applyPolicy(ctx, system, x.vault, x.name, now); err != nil {
			s.log.Warn("rotation policy not applied", "vault", x.vault, "key", x.name, "err", err)
		}
	}
	return nil
}

func (s *Service) applyPolicy(ctx context.Context, system identity.Principal, vault, name string, now time.Time) error {
	s.forgetKey(vault, name)
	c, err := s.liveKey(ctx, vault, name)
	if err != nil {
		return err
	}
	pol, err := decodePolicy(c.row.Policy)
	if err != nil {
		return err
	}
	newest, _ := pick(c, "", false)
	for _, la := range pol.LifetimeActions {
		due := false
		if d, err := parseISODuration(la.Trigger.TimeAfterCreate); la.Trigger.TimeAfterCreate != "" && err == nil {
			due = !now.Before(time.Unix(newest.Created, 0).Add(d))
		}
		if d, err := parseISODuration(la.Trigger.TimeBeforeExpiry); la.Trigger.TimeBeforeExpiry != "" && err == nil && newest.Exp != 0 {
			due = !now.Before(time.Unix(newest.Exp, 0).Add(-d))
		}
		if !due {
			continue
		}
		v, err := s.vault(ctx, vault)
		if err != nil {
			return err
		}
		start := s.now()
		switch la.Action.Type {
		case "Rotate":
			k, err := s.rotate(ctx, v, name, newest.Version)
			if errors.Is(err, errRotatedMeanwhile) {
				return nil // another replica's run served this trigger
			}
			target := vault + "/keys/" + name
			if err == nil {
				target = k.ID
			}
			s.record(ctx, system, auditEntry{op: "KeyRotateByPolicy", target: target, res: resource(vault, name), start: start, sync: true}, err)
			if err != nil {
				return err
			}
			return nil // the new version restarts the clock
		case "Notify":
			if c.row.NotifiedVersion == newest.Version {
				continue
			}
			// Conditional: of the replicas whose runs find the notice due at once, one
			// changes the row and sends it.
			res, err := s.db.ExecContext(ctx, `UPDATE vault_keys SET notified_version = ? WHERE vault = ? AND name = ? AND notified_version <> ?`,
				newest.Version, vault, name, newest.Version)
			if err != nil {
				return err
			}
			s.forgetKey(vault, name)
			if n, _ := res.RowsAffected(); n == 0 {
				continue
			}
			s.log.Info("key near expiry", "vault", vault, "key", name, "version", newest.Version)
			s.record(ctx, system, auditEntry{op: "KeyNearExpiryNotify", target: KeyID(v.URL, name, newest.Version), res: resource(vault, name), start: start, sync: true}, nil)
		}
	}
	return nil
}
