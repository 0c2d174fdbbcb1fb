package signatures

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the signature policy's collectors; a nil *Metrics records nothing.
type Metrics struct {
	pulls         *prometheus.CounterVec // mode, result
	verifications *prometheus.CounterVec // kind, result
	seconds       *prometheus.HistogramVec
}

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coffer_signature_pulls_total",
			Help: "Manifest pulls judged by the signature policy, by mode (audit, enforce) and result (verified, unverified, refused, exempt)."},
			[]string{"mode", "result"}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coffer_signature_verifications_total",
			Help: "Signature verifications computed (cache misses), by signature kind and result (verified, failed)."},
			[]string{"kind", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "coffer_signature_verification_seconds",
			Help: "Time to verify one signature on a cache miss, by kind.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8)},
			[]string{"kind"}),
	}
	reg.MustRegister(m.pulls, m.verifications, m.seconds)
	return m
}

func (m *Metrics) pull(mode, result string) {
	if m != nil {
		m.pulls.WithLabelValues(mode, result).Inc()
	}
}

func (m *Metrics) verified(kind string, ok bool, d time.Duration) {
	if m == nil {
		return
	}
	r := "failed"
	if ok {
		r = "verified"
	}
	m.verifications.WithLabelValues(kind, r).Inc()
	m.seconds.WithLabelValues(kind).Observe(d.Seconds())
}
