package server

import "context"

// registryPart holds what the server keeps of the registry part.
type registryPart struct{}

// mountRegistry wires the registry part: its services, routes and background jobs.
func (s *Server) mountRegistry(ctx context.Context) error {
	return nil
}
