package server

// limits.go bounds what a slow or an unauthenticated client can hold on the listeners:
//
//   - every request body is read under a deadline that each read returning data extends
//     (config.Limits.RequestBodyTimeout), with a minimum average rate once that time has
//     passed (RequestBodyMinRate), so an upload that makes progress is never cut and one
//     that stalls or trickles is;
//   - an answer given before the body was read (the APIs authenticate before they read, so
//     an unauthenticated PATCH gets its 401 at once) does not leave the connection waiting
//     for that body: over HTTP/1 the answer says Connection: close and the rest of the body
//     gets a short drain window; over HTTP/2 the answer is flushed and the rest of a small
//     body is read in the same window, so the stream ends cleanly instead of being reset
//     while the client is still sending;
//   - one client address may hold at most UnauthenticatedConnsPerAddress connections that
//     have not yet completed a request with a valid credential; more are closed when
//     accepted (a connection that authenticated no longer counts).

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cofferhq/coffer/internal/httpstatus"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
	"github.com/cofferhq/coffer/internal/token"
)

const (
	// maxDrainWindow bounds how long the rest of a body is awaited after an early answer.
	maxDrainWindow = 2 * time.Second
	// http2DrainLimit is how much of an unread HTTP/2 body is read after an early answer
	// so that the stream ends cleanly (a manifest or a vault body over its limit fits).
	http2DrainLimit = 8 << 20
)

// The HTTP/2 receive windows: how much a client may send on a stream, and on a
// connection, before the server has read it. Go's defaults (1 MiB each) make a layer push
// wait for a window update every MiB; 4 MiB per stream keeps a push streaming, and the
// per-connection window caps what one connection can make the server buffer however many
// streams it opens (docs/registry.md, "HTTP/2").
const (
	http2StreamWindow     = 4 << 20
	http2ConnectionWindow = 16 << 20
)

// http2Settings is the server's HTTP/2 configuration. Pulls are governed by the client's
// windows; frames the server writes are as large as the client accepts.
func http2Settings() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxReceiveBufferPerStream:     http2StreamWindow,
		MaxReceiveBufferPerConnection: http2ConnectionWindow,
		MaxReadFrameSize:              1 << 20,
	}
}

// connLimiter counts, per client address, the open connections that have not yet
// completed an authenticated request, and refuses new ones over the cap.
type connLimiter struct {
	max     int
	refused prometheus.Counter
	log     *slog.Logger

	mu   sync.Mutex
	open map[netip.Addr]int
}

func newConnLimiter(max int, refused prometheus.Counter, log *slog.Logger) *connLimiter {
	return &connLimiter{max: max, refused: refused, log: log, open: map[netip.Addr]int{}}
}

// wrap returns ln with the cap applied to the connections it accepts.
func (l *connLimiter) wrap(ln net.Listener) net.Listener {
	if l.max <= 0 {
		return ln
	}
	return &limitedListener{Listener: ln, l: l}
}

type limitedListener struct {
	net.Listener
	l *connLimiter
}

// Accept returns the next connection within the cap; those over it are closed here, before
// any TLS handshake or request is read.
func (ll *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc, ok := ll.l.admit(c); ok {
			return tc, nil
		}
		c.Close()
	}
}

func (l *connLimiter) admit(c net.Conn) (net.Conn, bool) {
	var addr netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		addr = ta.AddrPort().Addr().Unmap()
	}
	l.mu.Lock()
	if l.open[addr] >= l.max {
		l.mu.Unlock()
		l.refused.Inc()
		l.log.Debug("connection closed: too many unauthenticated connections from this address",
			"addr", addr, "limit", l.max, "setting", "--unauthenticated-connections-per-address")
		return nil, false
	}
	l.open[addr]++
	l.mu.Unlock()
	tc := &trackedConn{Conn: c, l: l, addr: addr}
	tc.counted.Store(true)
	return tc, true
}

func (l *connLimiter) release(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[addr] <= 1 {
		delete(l.open, addr)
		return
	}
	l.open[addr]--
}

// trackedConn is an accepted connection that counts against its address until it
// authenticates or closes.
type trackedConn struct {
	net.Conn
	l       *connLimiter
	addr    netip.Addr
	counted atomic.Bool
}

// authenticated takes the connection out of its address's count (once).
func (c *trackedConn) authenticated() {
	if c.counted.CompareAndSwap(true, false) {
		c.l.release(c.addr)
	}
}

func (c *trackedConn) Close() error {
	c.authenticated()
	return c.Conn.Close()
}

type trackedConnKey struct{}

// connContext (http.Server.ConnContext) lets a request reach its connection's count.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(*trackedConn); ok {
		return context.WithValue(ctx, trackedConnKey{}, tc)
	}
	return ctx
}

func trackedConnFrom(ctx context.Context) *trackedConn {
	tc, _ := ctx.Value(trackedConnKey{}).(*trackedConn)
	return tc
}

// markAuthenticated takes the request's connection out of the unauthenticated count when
// the request presented a valid credential: a bearer token that verifies for the API it
// was sent to (not an anonymous one), or a token endpoint's 200 to a request that carried
// a credential (a password, a client secret, a refresh token, the identity header).
func (s *Server) markAuthenticated(r *http.Request, api string, code int) {
	tc := trackedConnFrom(r.Context())
	if tc == nil || !tc.counted.Load() || code == http.StatusUnauthorized {
		return
	}
	if api == "token" {
		if code == http.StatusOK && issuesTokens(r.URL.Path) &&
			(r.Method == http.MethodPost || r.Header.Get("Authorization") != "" || r.Header.Get("X-IDENTITY-HEADER") != "") {
			tc.authenticated()
		}
		return
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || raw == "" || s.parts == nil {
		return
	}
	var aud string
	switch api {
	case "registry":
		aud = token.RegistryService
	case "management":
		aud = token.AudienceManagement
	case "vault":
		aud = token.VaultResource(s.cfg.Vault.Domain)
	default:
		return
	}
	claims, err := s.parts.tokens.Verify(r.Context(), strings.TrimSpace(raw), aud)
	if err != nil || claims.Kind == identity.KindAnonymous {
		return
	}
	tc.authenticated()
}

// issuesTokens reports whether path is a token endpoint that answers 200 only to a valid
// credential (the JWKS and discovery documents answer anyone).
func issuesTokens(path string) bool {
	return path == "/msi/token" || strings.HasSuffix(path, "/oauth2/token") || strings.HasSuffix(path, "/oauth2/v2.0/token")
}

// bodyGuard reads a request body under the body deadlines.
type bodyGuard struct {
	body    io.ReadCloser
	rc      *http.ResponseController
	idle    time.Duration
	minRate int64
	length  int64 // declared length, -1 when unknown

	start    time.Time // of the first read
	n        int64
	done     bool      // the whole body was read
	armed    bool      // a read deadline is set
	until    time.Time // drain window after an early answer; zero: none
	reason   string    // what the armed deadline enforces
	timedOut error     // the deadline that cut the body, if one did
}

func newBodyGuard(w http.ResponseWriter, r *http.Request, lim limits) *bodyGuard {
	return &bodyGuard{body: r.Body, rc: http.NewResponseController(w), idle: lim.bodyTimeout, minRate: lim.minRate, length: r.ContentLength}
}

func (b *bodyGuard) Read(p []byte) (int, error) {
	if b.done {
		return b.body.Read(p)
	}
	now := time.Now()
	if b.start.IsZero() {
		b.start = now
	}
	d, reason := b.deadline(now)
	if err := b.rc.SetReadDeadline(d); err == nil {
		b.armed, b.reason = true, reason
	}
	n, err := b.body.Read(p)
	b.n += int64(n)
	if err == io.EOF || (b.length >= 0 && b.n >= b.length) {
		b.finish()
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && b.armed {
		b.timedOut = fmt.Errorf("request body: %s: %w", b.reason, err)
		return n, b.timedOut
	}
	return n, err
}

// deadline is the time by which the next bytes must arrive: the per-read timeout, the
// minimum average rate after the first timeout period, the drain window.
func (b *bodyGuard) deadline(now time.Time) (time.Time, string) {
	d := now.Add(b.idle)
	reason := fmt.Sprintf("no data for %s (--request-body-timeout)", b.idle)
	if b.minRate > 0 {
		allowed := b.idle + time.Duration(float64(b.n)/float64(b.minRate)*float64(time.Second))
		if r := b.start.Add(allowed); r.Before(d) {
			d, reason = r, fmt.Sprintf("slower than %d bytes/s (--request-body-min-rate)", b.minRate)
		}
	}
	if !b.until.IsZero() && b.until.Before(d) {
		d, reason = b.until, "the rest of a body that was answered before it was read did not arrive in time"
	}
	return d, reason
}

// finish marks the body read and lifts the deadline, which would otherwise cut the
// connection's background read while a long answer is written.
func (b *bodyGuard) finish() {
	b.done = true
	if b.armed {
		b.rc.SetReadDeadline(time.Time{})
		b.armed = false
	}
}

func (b *bodyGuard) Close() error { return b.body.Close() }

// limits are the body deadlines of config.Limits.
type limits struct {
	bodyTimeout time.Duration
	minRate     int64
}

func (l limits) drainWindow() time.Duration {
	return min(l.bodyTimeout, maxDrainWindow)
}

// guard runs h with the request body under its deadlines and handles early answers;
// rec is the writer h writes to.
func (s *Server) guard(api string, h http.Handler, rec *httpstatus.Recorder, w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || s.limits.bodyTimeout <= 0 {
		h.ServeHTTP(rec, r)
		return
	}
	g := newBodyGuard(w, r, s.limits)
	r = r.WithContext(r.Context()) // a copy: the server keeps its view of the original body
	r.Body = g
	early := false
	rec.OnHeader = func() {
		if g.done {
			return
		}
		early = true
		if r.ProtoMajor == 1 {
			// Go would read up to 256 KiB of the body before sending this answer, with no
			// deadline: send it now, close after it, and give the rest a short window.
			rec.Header().Set("Connection", "close")
			g.until = time.Now().Add(s.limits.drainWindow())
			if g.rc.SetReadDeadline(g.until) == nil {
				g.armed, g.reason = true, "drain"
			}
		}
	}
	h.ServeHTTP(rec, r)
	if g.timedOut != nil && !rec.Answered() {
		// The handler gave up on the body without answering (it saw the request's context
		// end): say why, in the API's error shape.
		s.httpBodyTimeouts.Inc()
		writeTimeout(rec, api, g.timedOut.Error())
		return
	}
	if g.timedOut != nil {
		s.httpBodyTimeouts.Inc()
	}
	if early && r.ProtoMajor >= 2 && !g.done && g.timedOut == nil {
		// HTTP/2: send the answer, then read the rest of a small body so that the stream
		// ends cleanly rather than with a reset while the client is still sending.
		g.rc.Flush()
		g.until = time.Now().Add(s.limits.drainWindow())
		io.CopyN(io.Discard, g, http2DrainLimit)
	}
}

// writeTimeout answers 408 in the error shape of api.
func writeTimeout(w http.ResponseWriter, api, msg string) {
	w.Header().Set("Connection", "close")
	switch api {
	case "registry":
		registryauth.WriteError(w, http.StatusRequestTimeout, &registry.Error{Code: registry.CodeBlobUploadInvalid, Message: msg})
	case "token":
		body, _ := json.Marshal(map[string]string{"error": "invalid_request", "error_description": msg})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusRequestTimeout)
		w.Write(body)
	default: // management and vault: {"error":{"code","message"}}
		mgmt.WriteError(w, http.StatusRequestTimeout, "RequestTimeout", msg)
	}
}

// serverErrorLog is http.Server.ErrorLog: plain-HTTP requests on a TLS port (crane probes
// loopback registries that way; the TLS layer answers them 400) are counted and logged at
// debug, everything else is a warning as before.
type serverErrorLog struct {
	log        *slog.Logger
	plainOnTLS prometheus.Counter
}

func (e serverErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.Contains(msg, "client sent an HTTP request to an HTTPS server") {
		e.plainOnTLS.Inc()
		e.log.Debug(msg)
		return len(p), nil
	}
	e.log.Warn(msg)
	return len(p), nil
}
