package tokenapi

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
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
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h(sw, r)
		g := grant
		if g == "" {
			if g = r.PostForm.Get("grant_type"); !knownGrants[g] {
				g = "other"
			}
		}
		result := "ok"
		switch {
		case sw.code == http.StatusUnauthorized || sw.code == http.StatusForbidden || sw.code == http.StatusTooManyRequests:
			result = "denied"
		case sw.code >= 500:
			result = "error"
		case sw.code >= 400:
			result = "client_error"
		}
		m.requests.WithLabelValues(g, result).Inc()
	}
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
