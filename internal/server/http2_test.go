package server_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/servertest"
)

// tokenFor gets a token for service as the administrator through the Docker token flow.
func tokenFor(t *testing.T, inst *servertest.Instance, service string, scopes ...string) string {
	t.Helper()
	q := url.Values{"service": {service}, "scope": scopes}
	req, _ := http.NewRequest(http.MethodGet, inst.URL+"/oauth2/token?"+q.Encode(), nil)
	req.SetBasicAuth("admin", inst.AdminPassword)
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil || body.Token == "" {
		t.Fatalf("token for %s: %d", service, resp.StatusCode)
	}
	return body.Token
}

// TestEarlyRefusalsKeepTheirBodyOverHTTP2: a request refused before its body was read (a
// manifest over the size limit, a vault body over 4 MiB) gets its error JSON over HTTP/2,
// which the test client negotiates over TLS, and the refusal does not tear the connection
// down (a GOAWAY and a close while the client is still sending is how clients such as curl
// lose the answer's body): the next request reuses the connection.
func TestEarlyRefusalsKeepTheirBodyOverHTTP2(t *testing.T) {
	inst := servertest.Start(t, func(c *config.Server) { c.Registry.MaxManifestSize = 1024 })
	regTok := tokenFor(t, inst, "coffer-registry", "repository:h2/app:pull,push")
	mgmtTok := tokenFor(t, inst, "coffer-management")

	cases := []struct {
		name, method, path, token, ctype string
		body                             []byte
		status                           int
		want                             string // in the error JSON
	}{
		{"manifest over the limit", http.MethodPut, "/v2/h2/app/manifests/v1", regTok,
			"application/vnd.oci.image.manifest.v1+json", bytes.Repeat([]byte(" "), 512<<10), http.StatusRequestEntityTooLarge, `"MANIFEST_INVALID"`},
		{"vault body over 4 MiB", http.MethodPost, "/coffer/v1/vaults", mgmtTok,
			"application/json", append([]byte(`{"name":"`), bytes.Repeat([]byte("a"), 5<<20)...), http.StatusBadRequest, `"error"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, inst.URL+tc.path, bytes.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+tc.token)
			req.Header.Set("Content-Type", tc.ctype)
			resp, err := inst.Client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.path, err)
			}
			defer resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Fatalf("the test client spoke %s, want HTTP/2", resp.Proto)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("reading the %d answer's body over HTTP/2: %v (the body was lost)", resp.StatusCode, err)
			}
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
				t.Fatalf("%s %s = %d %q, want %d with %s", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.want)
			}

			reused := false
			next, _ := http.NewRequest(http.MethodGet, inst.URL+"/healthz", nil)
			next = next.WithContext(httptrace.WithClientTrace(next.Context(), &httptrace.ClientTrace{
				GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
			}))
			r2, err := inst.Client.Do(next)
			if err != nil {
				t.Fatal(err)
			}
			r2.Body.Close()
			if !reused {
				t.Fatalf("the %d refusal closed the HTTP/2 connection (GOAWAY): the next request needed a new one", tc.status)
			}
		})
	}
}

// TestEarlyAnswerOverHTTP2WaitsForTheRestOfABody: over HTTP/2 a stream answered before
// its (small) body was read is not reset while the client is still sending: the server
// reads the rest of the body, so the stream ends cleanly and the client keeps the answer.
func TestEarlyAnswerOverHTTP2WaitsForTheRestOfABody(t *testing.T) {
	inst := servertest.Start(t, nil)
	conn, err := tls.Dial("tcp", inst.Addr, &tls.Config{RootCAs: inst.CAPool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(bound))
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings()
	headers := func(stream uint32, endStream bool, fields ...[2]string) {
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for _, kv := range fields {
			enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: endStream}); err != nil {
			t.Fatal(err)
		}
	}
	// An unauthenticated manifest push of 16 KB (inside the initial flow-control window),
	// of which the client sends half before the answer and half after.
	headers(1, false, [2]string{":method", "PUT"}, [2]string{":scheme", "https"}, [2]string{":authority", inst.Addr},
		[2]string{":path", "/v2/h2/app/manifests/v1"}, [2]string{"content-type", "application/vnd.oci.image.manifest.v1+json"},
		[2]string{"content-length", "16000"})
	fr.WriteData(1, false, bytes.Repeat([]byte(" "), 8000))

	answered, sentRest, ended, healthz := false, false, false, false
	var body []byte
	// Read until both streams ended: the answered stream ends once the server has read the
	// rest of its body, which may be after the second request was answered.
	for !healthz || !ended {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames: %v (answered %v)", err, answered)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				t.Fatalf("the server reset the answered stream (%v) while the client was still sending its body", f.ErrCode)
			}
		case *http2.GoAwayFrame:
			t.Fatalf("the server sent GOAWAY (%v) after an early answer", f.ErrCode)
		case *http2.HeadersFrame:
			if f.StreamID == 1 {
				answered = true
			}
		case *http2.DataFrame:
			if f.StreamID == 1 {
				body = append(body, f.Data()...)
			}
			if f.StreamID == 1 && f.StreamEnded() {
				ended = true
			}
			if f.StreamID == 3 && f.StreamEnded() {
				healthz = true
			}
			if f.StreamID == 1 && len(body) > 0 && !sentRest {
				// The answer arrived; the client, which sends its body whatever the answer,
				// sends the rest of it, then a second request on the same connection.
				sentRest = true
				fr.WriteData(1, true, bytes.Repeat([]byte(" "), 8000))
				headers(3, true, [2]string{":method", "GET"}, [2]string{":scheme", "https"}, [2]string{":authority", inst.Addr}, [2]string{":path", "/healthz"})
			}
		}
	}
	if !ended {
		t.Fatal("the answered stream did not end")
	}
	if !strings.Contains(string(body), `"UNAUTHORIZED"`) {
		t.Fatalf("early answer body = %q, want the registry's UNAUTHORIZED error", body)
	}
}

// TestHTTP2ReceiveWindows: the server advertises the larger receive windows that keep a
// push streaming (a 4 MiB stream window, a 16 MiB connection window) and 1 MiB frames.
func TestHTTP2ReceiveWindows(t *testing.T) {
	inst := servertest.Start(t, nil)
	conn, err := tls.Dial("tcp", inst.Addr, &tls.Config{RootCAs: inst.CAPool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(bound))
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings()
	var streamWindow, frameSize uint32
	var connWindow uint32 = 65535 // the connection window every HTTP/2 connection starts with
	gotSettings := false
	for !gotSettings || connWindow == 65535 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's preface: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			gotSettings = true
			f.ForeachSetting(func(s http2.Setting) error {
				switch s.ID {
				case http2.SettingInitialWindowSize:
					streamWindow = s.Val
				case http2.SettingMaxFrameSize:
					frameSize = s.Val
				}
				return nil
			})
			fr.WriteSettingsAck()
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				connWindow += f.Increment
			}
		}
	}
	if streamWindow != 4<<20 || connWindow != 16<<20 || frameSize != 1<<20 {
		t.Fatalf("server advertises stream window %d, connection window %d, max frame %d; want %d, %d, %d",
			streamWindow, connWindow, frameSize, 4<<20, 16<<20, 1<<20)
	}
}
