package encryption

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/seal"
	"github.com/cofferhq/coffer/internal/seal/keyring"
)

// Metrics are encryption at rest's Prometheus collectors: the plaintext bytes sealed and
// opened, and the key access checks against the vault by result. No label names a key,
// a vault or a repository. A nil *Metrics records nothing.
type Metrics struct {
	sealed, opened prometheus.Counter
	checks         *prometheus.CounterVec // result
	reg            prometheus.Registerer
}

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sealed: prometheus.NewCounter(prometheus.CounterOpts{Name: "coffer_encryption_sealed_bytes_total",
			Help: "Plaintext bytes sealed (encrypted) before they were stored."}),
		opened: prometheus.NewCounter(prometheus.CounterOpts{Name: "coffer_encryption_opened_bytes_total",
			Help: "Plaintext bytes opened (authenticated and decrypted) from storage."}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coffer_encryption_key_checks_total",
			Help: "Access checks of the registry's encryption key against its vault, by result (ok, denied, disabled, not_found, network_denied, unavailable, error)."},
			[]string{"result"}),
		reg: reg,
	}
	reg.MustRegister(m.sealed, m.opened, m.checks)
	return m
}

// watch adds the gauge of the key's accessibility, read from the keyring at each scrape
// (no vault call).
func (m *Metrics) watch(kr *keyring.Keyring) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "coffer_encryption_key_accessible",
		Help: "1 while the registry's encryption key is accessible (reads and writes work), 0 while its last access check failed."},
		func() float64 {
			st, err := kr.Status(context.Background(), false)
			if err != nil || !st.KeyAccessible {
				return 0
			}
			return 1
		}))
}

// checked records one access check.
func (m *Metrics) checked(cause error) {
	if m == nil {
		return
	}
	m.checks.WithLabelValues(checkResult(cause)).Inc()
}

// checkResult names the outcome of a check with a few fixed values.
func checkResult(cause error) string {
	switch {
	case cause == nil:
		return "ok"
	case errors.Is(cause, kek.ErrForbidden):
		return "denied"
	case errors.Is(cause, kek.ErrDisabled):
		return "disabled"
	case errors.Is(cause, kek.ErrNotFound):
		return "not_found"
	case errors.Is(cause, kek.ErrNetworkDenied):
		return "network_denied"
	case errors.Is(cause, kek.ErrUnavailable):
		return "unavailable"
	}
	return "error"
}

// driverOptions are the sealing driver's byte counters.
func (m *Metrics) driverOptions() []seal.Option {
	if m == nil {
		return nil
	}
	return []seal.Option{seal.WithCounters(
		func(n int) { m.sealed.Add(float64(n)) },
		func(n int) { m.opened.Add(float64(n)) },
	)}
}
