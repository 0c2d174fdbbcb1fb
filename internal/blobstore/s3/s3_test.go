package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/blobstore/drivertest"
	"github.com/cofferhq/coffer/internal/blobstore/s3"
	"github.com/cofferhq/coffer/internal/blobstore/s3/s3test"
	"github.com/cofferhq/coffer/internal/seal"
)

// counting counts the HTTP requests the driver makes, by method.
type counting struct {
	rt    http.RoundTripper
	gets  atomic.Int32
	heads atomic.Int32
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	switch r.Method {
	case http.MethodGet:
		c.gets.Add(1)
	case http.MethodHead:
		c.heads.Add(1)
	}
	return c.rt.RoundTrip(r)
}

func newDriver(t *testing.T, srv *s3test.Server, bucket, prefix string, client *http.Client) *s3.Driver {
	t.Helper()
	d, err := s3.New(context.Background(), s3.Options{
		Bucket: bucket, Prefix: prefix, Endpoint: srv.Endpoint, Region: "us-east-1", PathStyle: true,
		AccessKeyID: s3test.AccessKey, SecretAccessKey: s3test.SecretKey, HTTPClient: client,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDriver runs the shared driver suite against a real S3 server (versitygw), each test
// under a prefix of its own in one bucket.
func TestDriver(t *testing.T) {
	srv := s3test.Start(t, "suite")
	n := 0
	drivertest.Run(t, func(t *testing.T) blobstore.Driver {
		n++
		return newDriver(t, srv, "suite", fmt.Sprintf("run%d/coffer", n), nil)
	})
}

// TestRangeReadIsOneRequest: a read at an offset is one GET, with no HEAD beside it, and
// its reader knows the object's size.
func TestRangeReadIsOneRequest(t *testing.T) {
	srv := s3test.Start(t, "bkt")
	c := &counting{rt: http.DefaultTransport}
	d := newDriver(t, srv, "bkt", "", &http.Client{Transport: c})
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789"), 10_000)
	w, _ := d.Writer(ctx, "obj")
	w.Write(data)
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	g0, h0 := c.gets.Load(), c.heads.Load()
	r, err := d.Reader(ctx, "obj", 12_345)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, data[12_345:]) {
		t.Fatal("range read differs")
	}
	if g, h := c.gets.Load()-g0, c.heads.Load()-h0; g != 1 || h != 0 {
		t.Fatalf("a range read made %d GETs and %d HEADs, want one GET", g, h)
	}
	if s := r.(blobstore.Sizer).ObjectSize(); s != int64(len(data)) {
		t.Fatalf("ObjectSize = %d, want %d", s, len(data))
	}
}

// TestMissingBucket: a bucket that is not there fails New with a message naming it.
func TestMissingBucket(t *testing.T) {
	srv := s3test.Start(t)
	_, err := s3.New(context.Background(), s3.Options{
		Bucket: "absent", Endpoint: srv.Endpoint, Region: "us-east-1", PathStyle: true,
		AccessKeyID: s3test.AccessKey, SecretAccessKey: s3test.SecretKey,
	})
	if err == nil || !strings.Contains(err.Error(), `bucket "absent"`) {
		t.Fatalf("New on a missing bucket: %v", err)
	}
	_, err = s3.New(context.Background(), s3.Options{
		Bucket: "absent", Endpoint: srv.Endpoint, PathStyle: true, AccessKeyID: s3test.AccessKey,
	})
	if err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("New with half a credential: %v", err)
	}
}

// TestKeysUnderPrefix: objects land at <prefix>/<path> in the bucket, which is where the
// gateway's directory shows them.
func TestKeysUnderPrefix(t *testing.T) {
	srv := s3test.Start(t, "bkt")
	d := newDriver(t, srv, "bkt", "team/coffer", nil)
	ctx := context.Background()
	w, _ := d.Writer(ctx, "blobs/x")
	w.Write([]byte("hello"))
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(srv.Dir, "bkt", "team", "coffer", "blobs", "x"))
	if err != nil || string(b) != "hello" {
		t.Fatalf("object at the gateway: %q, %v", b, err)
	}
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct{ in, bucket, prefix, err string }{
		{"s3://bucket", "bucket", "", ""},
		{"s3://bucket/", "bucket", "", ""},
		{"s3://bucket/a/b/", "bucket", "a/b", ""},
		{"s3://bucket/a/../b", "", "", "prefix"},
		{"file:///x", "", "", "want s3://"},
		{"s3:///x", "", "", "want s3://"},
		{"s3://k:s@bucket/x", "", "", "want s3://"},
	} {
		b, p, err := s3.ParseURL(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseURL(%q) = %v, want an error about %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || b != c.bucket || p != c.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v", c.in, b, p, err)
		}
	}
}

// staticKeys is a seal.KeySource with one root key.
type staticKeys []byte

func (k staticKeys) CurrentKey(context.Context) (uint32, []byte, error) { return 1, k, nil }
func (k staticKeys) Key(_ context.Context, gen uint32) ([]byte, error) {
	if gen != 1 {
		return nil, fmt.Errorf("no root key of generation %d", gen)
	}
	return k, nil
}

// TestSealedDriver: the sealing driver over S3 (uploads as chunk objects, moves as copies)
// passes the suite too.
func TestSealedDriver(t *testing.T) {
	srv := s3test.Start(t, "sealed")
	key := bytes.Repeat([]byte{7}, seal.KeySize)
	n := 0
	drivertest.Run(t, func(t *testing.T) blobstore.Driver {
		n++
		return seal.NewDriver(newDriver(t, srv, "sealed", fmt.Sprintf("run%d", n), nil), staticKeys(key), seal.WithSegmentSize(4096))
	})
}
