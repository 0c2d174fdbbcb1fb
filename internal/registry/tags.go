package registry

import "context"

// Tags lists up to n tags after last (n < 0: all); more reports whether others follow.
func (s *Service) Tags(ctx context.Context, repo, last string, n int) (tags []string, more bool, err error) {
	if err := checkName(repo); err != nil {
		return nil, false, err
	}
	exists, err := s.meta.RepositoryExists(ctx, repo)
	if err != nil {
		return nil, false, asRegistryError(err)
	}
	if !exists {
		return nil, false, newError(CodeNameUnknown, "repository %s is not known", repo)
	}
	q := n
	if n >= 0 {
		q = n + 1
	}
	tags, err = s.meta.Tags(ctx, repo, last, q)
	if err != nil {
		return nil, false, asRegistryError(err)
	}
	if n >= 0 && len(tags) > n {
		return tags[:n], n > 0, nil
	}
	return tags, false, nil
}

// Catalog lists up to n repositories after last (n < 0: all).
func (s *Service) Catalog(ctx context.Context, last string, n int) ([]string, bool, error) {
	q := n
	if n >= 0 {
		q = n + 1
	}
	repos, err := s.meta.Repositories(ctx, last, q)
	if err != nil {
		return nil, false, asRegistryError(err)
	}
	if n >= 0 && len(repos) > n {
		return repos[:n], n > 0, nil
	}
	return repos, false, nil
}

// Listing page sizes (catalog, tags list, the management repository list).
const (
	// DefaultPageSize is the most entries a listing answers when the client gives no n.
	DefaultPageSize = 100
	// MaxPageSize is the most entries a listing answers whatever n asks.
	MaxPageSize = 1000
)
