package server

import "github.com/cofferhq/coffer/internal/registry"

// registryMetrics registers the registry's collectors; the gauge of open upload
// sessions reads the metadata store.
func (s *Server) registryMetrics(meta *registry.SQLMetadata) *registry.Metrics {
	return registry.NewMetrics(s.metrics, meta)
}
