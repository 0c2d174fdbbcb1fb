package kmsplugin

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the plugin's Prometheus metrics, on a registry of their own.
type Metrics struct {
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	key      *prometheus.GaugeVec
	healthy  prometheus.Gauge

	mu     sync.Mutex
	keyNow string
}

// NewMetrics registers the plugin's metrics.
func NewMetrics() *Metrics { return NewMetricsFor(nil) }

// NewMetricsFor registers the plugin's metrics with labels added to every series, on the
// plugin's own registry (Handler) and on each of also (a plugin inside `coffer serve`: the
// server's /metrics, with the cluster as a label).
func NewMetricsFor(labels prometheus.Labels, also ...prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "coffer_kms_plugin_request_duration_seconds",
			Help:    "KMS v2 gRPC calls (status, encrypt, decrypt) by result (ok, error, unknown_key).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"method", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coffer_kms_plugin_vault_errors_total",
			Help: "Vault errors by kind (forbidden, network_denied, not_found, disabled, unavailable, invalid, settings, other).",
		}, []string{"kind"}),
		key: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "coffer_kms_plugin_key_info",
			Help: "1 for the write key version in use (its key_id); one series at a time.",
		}, []string{"key_id"}),
		healthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "coffer_kms_plugin_healthy",
			Help: "1 while the last key self-test passed.",
		}),
	}
	for _, r := range append([]prometheus.Registerer{m.reg}, also...) {
		prometheus.WrapRegistererWith(labels, r).MustRegister(m.duration, m.errors, m.key, m.healthy)
	}
	return m
}

func (m *Metrics) observe(method, result string, start, end time.Time) {
	m.duration.WithLabelValues(method, result).Observe(end.Sub(start).Seconds())
}

func (m *Metrics) vaultError(kind string) { m.errors.WithLabelValues(kind).Inc() }

func (m *Metrics) setKey(kid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keyNow != "" {
		m.key.DeleteLabelValues(m.keyNow)
	}
	m.keyNow = kid
	m.key.WithLabelValues(kid).Set(1)
}

func (m *Metrics) setHealthy(ok bool) {
	if ok {
		m.healthy.Set(1)
	} else {
		m.healthy.Set(0)
	}
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
