package vault

import (
	"context"
	"database/sql"

	"github.com/cofferhq/coffer/internal/vault/keys"
)

// InsertKeyAsBefore stores an oct key under exactly name, as the vault did before key
// names became case-insensitive (no check against names that differ only in case): a
// data directory of that time may hold such pairs.
func InsertKeyAsBefore(ctx context.Context, s *Service, vault, name string, secret []byte) error {
	version := newVersionID()
	j := keys.JWK{Kty: keys.KtyOct, K: secret}
	now := s.now().Unix()
	row := versionRow{Vault: vault, Name: name, Version: version, Seq: 1, Kty: j.Kty, KeyOps: keys.DefaultOps(j.Kty), Public: j.Public(),
		Sealed: seal(s.sealer.material, jsonMarshal(j), materialAAD(vault, name, version)), Enabled: true, Created: now, Updated: now, Tags: map[string]string{}}
	row.Public.Kid, row.Public.KeyOps = "", nil
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO vault_keys (vault, name, next_seq) VALUES (?, ?, 2)`, vault, name); err != nil {
			return err
		}
		return insertVersion(ctx, tx, row)
	})
	s.forgetKey(vault, name)
	return err
}
