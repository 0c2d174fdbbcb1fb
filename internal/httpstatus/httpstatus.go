// Package httpstatus remembers the status an HTTP handler answered, for the parts that act
// on it afterwards (request metrics, the audit of access-policy changes, token metrics).
package httpstatus

import "net/http"

// Recorder wraps a ResponseWriter and remembers the first final status written (200 when
// the handler writes a body without WriteHeader).
type Recorder struct {
	http.ResponseWriter
	code int
	// OnHeader, if set, runs once just before the answer's header is sent.
	OnHeader func()
}

// NewRecorder wraps w.
func NewRecorder(w http.ResponseWriter) *Recorder { return &Recorder{ResponseWriter: w} }

func (r *Recorder) WriteHeader(code int) {
	if r.code == 0 && code >= 200 {
		r.header()
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *Recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.header()
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *Recorder) header() {
	if r.OnHeader != nil {
		r.OnHeader()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer (flush, deadlines).
func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Answered reports whether a final status has been written.
func (r *Recorder) Answered() bool { return r.code != 0 }

// Status is the status answered; 200 when the handler wrote nothing at all (net/http
// answers 200 then).
func (r *Recorder) Status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}
