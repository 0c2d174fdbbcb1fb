package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/registry/api"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
)

// secretCause is what a broken backend says: the kind of text a client must never see.
const secretCause = "open /var/lib/coffer/blobs/sha256/ab/cd: SELECT * FROM blobs: disk I/O error"

// breakableDriver fails every read once broken is set.
type breakableDriver struct {
	blobstore.Driver
	broken atomic.Bool
}

func (d *breakableDriver) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	if d.broken.Load() {
		return nil, errors.New(secretCause)
	}
	return d.Driver.Reader(ctx, path, offset)
}

// TestInternalErrorHidesTheCause: a 500 answers the OCI error JSON with a generic message
// naming the request id, never the cause; the log line has both.
func TestInternalErrorHidesTheCause(t *testing.T) {
	drv := &breakableDriver{}
	svc := newServiceWith(t, func(d blobstore.Driver) blobstore.Driver { drv.Driver = d; return drv })
	v := &testVerifier{}
	var logs bytes.Buffer
	auth, err := registryauth.New(registryauth.Options{Verifier: v, Authorizer: denyAll{}})
	if err != nil {
		t.Fatal(err)
	}
	h := api.New(api.Config{Service: svc, Auth: auth, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	tok := v.issue("repository:team/app:pull,push")
	serve := func(method, path string, body []byte, hdr map[string]string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		for k, val := range hdr {
			req.Header.Set(k, val)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	blob := []byte("some layer")
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))
	if rec := serve("POST", "/v2/team/app/blobs/uploads/?digest="+d, blob, nil); rec.Code != http.StatusCreated {
		t.Fatalf("push: %d %s", rec.Code, rec.Body)
	}
	drv.broken.Store(true)

	for _, c := range []struct {
		name     string
		incoming string // X-Request-Id sent
		reused   bool   // whether the answer keeps it
	}{
		{"generated id", "", false},
		{"incoming id reused", "req-7f3a9c.01:retry_2", true},
		{"incoming id with a newline", "abc\nlevel=ERROR msg=forged", false},
		{"incoming id with spaces", "abc def", false},
		{"incoming id too long", strings.Repeat("a", 129), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			logs.Reset()
			hdr := map[string]string{}
			if c.incoming != "" {
				hdr["X-Request-Id"] = c.incoming
			}
			rec := serve("GET", "/v2/team/app/blobs/"+d, nil, hdr)
			if rec.Code != http.StatusInternalServerError {
				t.Fatalf("broken read: %d %s", rec.Code, rec.Body)
			}
			id := rec.Header().Get("X-Request-Id")
			if id == "" {
				t.Fatal("no X-Request-Id on the answer")
			}
			if reused := id == c.incoming; reused != c.reused {
				t.Fatalf("answer id %q for incoming %q: reused = %v, want %v", id, c.incoming, reused, c.reused)
			}
			var body struct {
				Errors []struct {
					Code    string            `json:"code"`
					Message string            `json:"message"`
					Detail  map[string]string `json:"detail"`
				} `json:"errors"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 {
				t.Fatalf("body %q is not one OCI error: %v", rec.Body, err)
			}
			e := body.Errors[0]
			if e.Code != "UNKNOWN" || !strings.Contains(e.Message, id) || e.Detail["requestId"] != id {
				t.Fatalf("error %+v does not name request id %s", e, id)
			}
			for _, leak := range []string{"disk I/O", "SELECT", "/var/lib"} {
				if strings.Contains(rec.Body.String(), leak) {
					t.Fatalf("the answer leaks the cause (%q): %s", leak, rec.Body)
				}
			}
			var line struct {
				Msg       string `json:"msg"`
				RequestID string `json:"request_id"`
				Err       string `json:"err"`
			}
			if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
				t.Fatalf("log %q: %v", logs.String(), err)
			}
			if line.RequestID != id || !strings.Contains(line.Err, secretCause) {
				t.Fatalf("log line %+v lacks request id %s or the cause", line, id)
			}
		})
	}
	// Every answer carries its request id, not only failures.
	drv.broken.Store(false)
	rec := serve("GET", "/v2/team/app/blobs/"+d, nil, map[string]string{"X-Request-Id": "abc-123"})
	if rec.Code != http.StatusOK || rec.Header().Get("X-Request-Id") != "abc-123" {
		t.Fatalf("healthy read: %d, X-Request-Id %q", rec.Code, rec.Header().Get("X-Request-Id"))
	}
}
