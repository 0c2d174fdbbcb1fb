package registry

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cofferhq/coffer/internal/blobstore"
)

// Metrics are the registry's Prometheus collectors. Labels are low-cardinality only:
// kind (blob, manifest) and result; never a repository name or a digest. A nil
// *Metrics records nothing, so a service or handler built without metrics works.
type Metrics struct {
	pushes, pulls       *prometheus.CounterVec // kind, result
	pushBytes, pullByte *prometheus.CounterVec // kind
	gcRuns              *prometheus.CounterVec // result
	gcFreed             prometheus.Counter
}

// UploadCounter counts the open upload sessions (SQLMetadata implements it).
type UploadCounter interface {
	CountUploads(ctx context.Context) (int, error)
}

// NewMetrics registers the registry's collectors with reg. If uploads is not nil, the
// gauge of open upload sessions asks it at each scrape, so the figure is right across
// restarts.
func NewMetrics(reg prometheus.Registerer, uploads UploadCounter) *Metrics {
	m := &Metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coffer_registry_pushes_total",
			Help: "Blob and manifest pushes by kind and result (ok, client_error, denied, error)."}, []string{"kind", "result"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coffer_registry_pulls_total",
			Help: "Blob and manifest pulls (GET) by kind and result."}, []string{"kind", "result"}),
		pushBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coffer_registry_push_bytes_total",
			Help: "Bytes of blobs and manifests pushed successfully, by kind."}, []string{"kind"}),
		pullByte: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coffer_registry_pull_bytes_total",
			Help: "Bytes of blobs and manifests sent to clients, by kind."}, []string{"kind"}),
		gcRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coffer_registry_gc_runs_total",
			Help: "Garbage collections (not dry runs) by result."}, []string{"result"}),
		gcFreed: prometheus.NewCounter(prometheus.CounterOpts{Name: "coffer_registry_gc_freed_bytes_total",
			Help: "Bytes of blobs removed by garbage collection."}),
	}
	reg.MustRegister(m.pushes, m.pulls, m.pushBytes, m.pullByte, m.gcRuns, m.gcFreed)
	if uploads != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "coffer_registry_upload_sessions_open",
			Help: "Upload sessions open (in the metadata store)."}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, err := uploads.CountUploads(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}))
	}
	return m
}

// Result names an outcome with a few fixed values.
func Result(err error) string {
	var e *Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, blobstore.ErrAccessDenied):
		return "denied"
	case errors.As(err, &e):
		return "client_error"
	}
	return "error"
}

// Push records a push of kind (blob, manifest) of n bytes ending with err.
func (m *Metrics) Push(kind string, n int64, err error) {
	if m == nil {
		return
	}
	m.pushes.WithLabelValues(kind, Result(err)).Inc()
	if err == nil && n > 0 {
		m.pushBytes.WithLabelValues(kind).Add(float64(n))
	}
}

// Pull records a pull of kind that sent n bytes and ended with err.
func (m *Metrics) Pull(kind string, n int64, err error) {
	if m == nil {
		return
	}
	m.pulls.WithLabelValues(kind, Result(err)).Inc()
	if n > 0 {
		m.pullByte.WithLabelValues(kind).Add(float64(n))
	}
}

// gc records a collection.
func (m *Metrics) gc(rep GCReport, err error) {
	if m == nil || rep.DryRun {
		return
	}
	m.gcRuns.WithLabelValues(Result(err)).Inc()
	if rep.BytesFreed > 0 {
		m.gcFreed.Add(float64(rep.BytesFreed))
	}
}

// CountUploads counts the open upload sessions.
func (m *SQLMetadata) CountUploads(ctx context.Context) (int, error) {
	var n int
	err := m.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM registry_uploads`).Scan(&n)
	return n, err
}

// GC runs a garbage collection (see collect) and records it in the metrics.
func (s *Service) GC(ctx context.Context, dryRun bool, progress func(GCProgress)) (GCReport, error) {
	rep, err := s.collect(ctx, dryRun, progress)
	s.opts.Metrics.gc(rep, err)
	return rep, err
}
