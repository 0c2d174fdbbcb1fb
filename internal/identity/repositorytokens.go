package identity

import (
	"context"

	"github.com/google/uuid"
)

// CreateRepositoryToken creates a repository-scoped token (a credential only; its scope map
// belongs to the access part) and returns its password, once.
func (s *Service) CreateRepositoryToken(ctx context.Context, name string) (Principal, string, error) {
	if err := validName("repository token", name); err != nil {
		return Principal{}, "", err
	}
	pw, err := newSecret()
	if err != nil {
		return Principal{}, "", err
	}
	p := Principal{ID: uuid.NewString(), Kind: KindRepositoryToken, Name: name}
	if err := s.insert(ctx, p, hashSecret(pw)); err != nil {
		return Principal{}, "", err
	}
	return p, pw, nil
}

// DeleteRepositoryToken deletes a repository-scoped token by name.
func (s *Service) DeleteRepositoryToken(ctx context.Context, name string) error {
	return s.Delete(ctx, KindRepositoryToken, name)
}
