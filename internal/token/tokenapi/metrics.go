package tokenapi

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cofferhq/coffer/internal/httpstatus"
)

// Metrics count token requests by grant and result; labels take a few fixed values
// only (never a user name or a scope). A nil *Metrics records nothing.
type Metrics struct {
	requests *prometheus.CounterVec // grant, result
}

// NewMetrics registers the token endpoints' collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coffer_token_requests_total",
		Help: "Token requests by grant (docker, password, refresh_token, client_credentials, managed_identity, other) and result (ok, denied, client_error, error)."},
		[]string{"grant", "result"})}
	reg.MustRegister(m.requests)
	return m
}

var knownGrants = map[string]bool{"password": true, "refresh_token": true, "client_credentials": true}

// counted wraps a token endpoint: grant is fixed, or "" to take the form's grant_type.
func (m *Metrics) counted(grant string, h http.HandlerFunc) http.HandlerFunc {
	if m == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		sw := httpstatus.NewRecorder(w)
		h(sw, r)
		g := grant
		if g == "" {
			if g = r.PostForm.Get("grant_type"); !knownGrants[g] {
				g = "other"
			}
		}
		result, code := "ok", sw.Status()
		switch {
		case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusTooManyRequests:
			result = "denied"
		case code >= 500:
			result = "error"
		case code >= 400:
			result = "client_error"
		}
		m.requests.WithLabelValues(g, result).Inc()
	}
}
