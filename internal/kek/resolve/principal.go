package resolve

import (
	"context"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/kek/inproc"
)

// ForPrincipal returns the in-process driver acting as p, an authenticated caller of this
// server of any kind (the KMS plugin's service principal, calling through the management
// API): the key must be in one of this process's vaults. The vault applies p's access
// policies or role assignments and its network rules to the in-process service (the
// CofferServices bypass), and records p in its audit trail.
func (r *Resolver) ForPrincipal(ctx context.Context, p identity.Principal, keyID string) (kek.KEK, error) {
	id, err := kek.ParseKeyID(keyID)
	if err != nil {
		return nil, err
	}
	_, local, err := r.o.Local.LocalVault(ctx, id.Vault)
	if err != nil {
		return nil, err
	}
	if !local {
		return nil, &kek.Error{Op: "get", KeyID: keyID, Kind: kek.ErrNotFound, Detail: "no vault of this server answers at " + id.Vault}
	}
	return inproc.New(r.o.Vault, p, r.o.Local.LocalVault), nil
}
