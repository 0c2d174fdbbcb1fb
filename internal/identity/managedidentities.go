package identity

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// CreateManagedIdentity creates a user-assigned managed identity.
func (s *Service) CreateManagedIdentity(ctx context.Context, name string) (Principal, error) {
	if err := validName("managed identity", name); err != nil {
		return Principal{}, err
	}
	p := Principal{ID: uuid.NewString(), Kind: KindManagedIdentity, Name: name, ClientID: uuid.NewString()}
	if err := s.insert(ctx, p, ""); err != nil {
		return Principal{}, err
	}
	return p, nil
}

// ManagedIdentity finds the identity a managed-identity token request names: by client id
// or object (principal) id among user-assigned identities and the system identity; with
// both empty, the system-assigned identity.
func (s *Service) ManagedIdentity(ctx context.Context, clientID, objectID string) (Principal, error) {
	if clientID == "" && objectID == "" {
		return s.system, nil
	}
	where, arg := `client_id = ?`, clientID
	if clientID == "" {
		where, arg = `id = ?`, objectID
	}
	p, err := s.lookupOne(ctx, `(kind = ? OR kind = ?) AND `+where, string(KindManagedIdentity), string(KindSystemIdentity), arg)
	if err != nil {
		return Principal{}, fmt.Errorf("no managed identity %q: %w", arg, err)
	}
	return p, nil
}
