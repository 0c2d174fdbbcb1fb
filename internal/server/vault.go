package server

import "context"

// vaultPart holds what the server keeps of the vault part.
type vaultPart struct{}

// mountVault wires the vault part: its services, routes and background jobs.
func (s *Server) mountVault(ctx context.Context) error {
	return nil
}
