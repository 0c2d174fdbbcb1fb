// Package s3 is a blobstore.Driver on S3-compatible object storage (AWS S3, Ceph RGW,
// MinIO, versitygw, …), through aws-sdk-go-v2.
//
// Objects are stored at <prefix>/<path> in one bucket, exactly the bytes written (above it,
// the sealing driver sees to it that these are ciphertext). What S3 offers and what it does
// not shapes the driver's capabilities:
//
//   - A writer buffers PartSize bytes (default 8 MiB; S3 wants parts of at least 5 MiB but
//     the last) and sends them as the parts of a multipart upload, or as one PutObject for a
//     smaller object. Nothing is visible before Commit; Close without Commit aborts.
//   - No append across requests (not a blobstore.Resumer): callers wrap the driver in
//     blobstore.Resumable, which keeps an upload as chunk objects that Compose concatenates
//     inside the store (UploadPartCopy) when every chunk but the last has 5 MiB or more.
//   - No rename (not a blobstore.Mover): Copy is a CopyObject (or part copies beyond 5 GiB)
//     and blobstore.Move adds a DeleteObject. A writer's CommitAt puts a small object
//     straight at another key; a multipart one is completed at its own key and copied.
//   - A read at an offset is one GetObject with a Range header; its reader knows the
//     object's size from Content-Range (blobstore.Sizer), so no HeadObject goes with it.
//
// Credentials: the ones given in Options, otherwise the standard AWS sources
// (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the shared credentials and config files,
// AWS_PROFILE, web identity, container and instance metadata).
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/cofferhq/coffer/internal/blobstore"
)

const (
	// MinPartSize is S3's least size of a multipart upload's part (but the last).
	MinPartSize = 5 << 20
	// DefaultPartSize is the part size writers use unless told otherwise.
	DefaultPartSize = 8 << 20
	// maxCopyPart is the largest object CopyObject (and one UploadPartCopy) copies.
	maxCopyPart = 5 << 30
)

// Options configure a Driver.
type Options struct {
	Bucket string
	// Prefix is prepended (with a slash) to every object's key; "" stores at the bucket's
	// top.
	Prefix string
	// Endpoint is the S3 service's URL (http://127.0.0.1:7070, https://s3.example.com);
	// "" means AWS S3 of Region.
	Endpoint string
	// Region is the bucket's region ("" takes the standard AWS sources, then us-east-1).
	Region string
	// PathStyle addresses buckets as <endpoint>/<bucket> rather than <bucket>.<endpoint>,
	// as most S3-compatible servers want.
	PathStyle bool
	// AccessKeyID and SecretAccessKey, when set, are the credentials; otherwise the
	// standard AWS sources are used.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// PartSize is the size of a multipart upload's parts (default DefaultPartSize, at least
	// MinPartSize). A writer holds one part in memory.
	PartSize int64
	// HTTPClient, if set, makes the requests.
	HTTPClient *http.Client
}

// ParseURL splits an s3://bucket/prefix URL into its bucket and prefix.
func ParseURL(raw string) (bucket, prefix string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("blob store URL %q: %w", raw, err)
	}
	if u.Scheme != "s3" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("blob store URL %q: want s3://BUCKET or s3://BUCKET/PREFIX", raw)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" {
		if err := blobstore.CheckPath(prefix); err != nil {
			return "", "", fmt.Errorf("blob store URL %q: prefix: %w", raw, err)
		}
	}
	return u.Host, prefix, nil
}

// Driver stores objects in one bucket under a prefix.
type Driver struct {
	c        *s3.Client
	bucket   string
	prefix   string // "" or ending in "/"
	partSize int64
}

var (
	_ blobstore.Copier      = (*Driver)(nil)
	_ blobstore.Composer    = (*Driver)(nil)
	_ blobstore.CommitterAt = (*writer)(nil)
	_ blobstore.Sizer       = (*reader)(nil)
)

// New connects to the bucket and checks that it is there and reachable with the
// credentials (one HeadBucket).
func New(ctx context.Context, o Options) (*Driver, error) {
	if o.Bucket == "" {
		return nil, errors.New("s3: a bucket is required")
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.PartSize < MinPartSize {
		return nil, fmt.Errorf("s3: part size %d is below S3's minimum of %d bytes", o.PartSize, MinPartSize)
	}
	var loads []func(*config.LoadOptions) error
	if o.Region != "" {
		loads = append(loads, config.WithRegion(o.Region))
	}
	if o.AccessKeyID != "" || o.SecretAccessKey != "" {
		if o.AccessKeyID == "" || o.SecretAccessKey == "" {
			return nil, errors.New("s3: an access key id and a secret access key go together: give both, or neither to use the standard AWS sources")
		}
		loads = append(loads, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(o.AccessKeyID, o.SecretAccessKey, o.SessionToken)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loads...)
	if err != nil {
		return nil, fmt.Errorf("s3: load the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	c := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = o.PathStyle
		if o.HTTPClient != nil {
			so.HTTPClient = o.HTTPClient
		}
		// Gateways over a POSIX tree (versitygw) answer a write racing with the removal of
		// an emptied directory with ExistingObjectIsDirectory; a retry succeeds.
		so.Retryer = retry.AddWithErrorCodes(retry.NewStandard(), "ExistingObjectIsDirectory")
		// Checksums only where S3 requires them: S3-compatible servers differ in their
		// support of the newer trailing checksums.
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	d := &Driver{c: c, bucket: o.Bucket, partSize: o.PartSize}
	if o.Prefix != "" {
		if err := blobstore.CheckPath(o.Prefix); err != nil {
			return nil, fmt.Errorf("s3: prefix: %w", err)
		}
		d.prefix = o.Prefix + "/"
	}
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(o.Bucket)}); err != nil {
		where := o.Endpoint
		if where == "" {
			where = "AWS S3 (" + cfg.Region + ")"
		}
		return nil, fmt.Errorf("s3: bucket %q at %s is not reachable (does it exist, and may these credentials use it?): %w", o.Bucket, where, err)
	}
	return d, nil
}

func (d *Driver) key(p string) (string, error) {
	if err := blobstore.CheckPath(p); err != nil {
		return "", err
	}
	return d.prefix + p, nil
}

// notFound tells whether err is S3's answer for a missing object.
func notFound(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchUpload":
			return true
		}
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

func invalidRange(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "InvalidRange" {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable
}

func (d *Driver) fail(op, p string, err error) error {
	if notFound(err) {
		return fmt.Errorf("%s %s: %w", op, p, blobstore.ErrNotFound)
	}
	return fmt.Errorf("s3: %s %s in bucket %s: %w", op, p, d.bucket, err)
}

// Writer starts a new object at p.
func (d *Driver) Writer(ctx context.Context, p string) (blobstore.Writer, error) {
	k, err := d.key(p)
	if err != nil {
		return nil, err
	}
	// The parts are sent under the writer's context without its cancellation: a client
	// that goes away mid-request does not cut a part in half (Cancel or Close aborts).
	return &writer{d: d, ctx: context.WithoutCancel(ctx), path: p, key: k}, nil
}

// Reader opens the object at p from offset: one GetObject.
func (d *Driver) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	k, err := d.key(p)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("s3: read %s: negative offset %d", p, offset)
	}
	in := &s3.GetObjectInput{Bucket: aws.String(d.bucket), Key: aws.String(k)}
	if offset > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	out, err := d.c.GetObject(ctx, in)
	if err != nil && offset > 0 && invalidRange(err) {
		// At or beyond the end: S3 answers 416 for a range starting at the size.
		info, serr := d.Stat(ctx, p)
		if serr != nil {
			return nil, serr
		}
		if offset == info.Size {
			return &reader{ReadCloser: io.NopCloser(bytes.NewReader(nil)), size: info.Size}, nil
		}
		return nil, fmt.Errorf("s3: read %s: offset %d outside object of %d bytes", p, offset, info.Size)
	}
	if err != nil {
		return nil, d.fail("read", p, err)
	}
	size := aws.ToInt64(out.ContentLength) + offset
	if cr := aws.ToString(out.ContentRange); cr != "" {
		if i := strings.LastIndexByte(cr, '/'); i >= 0 {
			if n, perr := strconv.ParseInt(cr[i+1:], 10, 64); perr == nil {
				size = n
			}
		}
	}
	return &reader{ReadCloser: out.Body, size: size}, nil
}

// reader is an object's body that knows the object's size.
type reader struct {
	io.ReadCloser
	size int64
}

func (r *reader) ObjectSize() int64 { return r.size }

// Stat describes the object at p (one HeadObject).
func (d *Driver) Stat(ctx context.Context, p string) (blobstore.Info, error) {
	k, err := d.key(p)
	if err != nil {
		return blobstore.Info{}, err
	}
	out, err := d.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(d.bucket), Key: aws.String(k)})
	if err != nil {
		return blobstore.Info{}, d.fail("stat", p, err)
	}
	return blobstore.Info{Path: p, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

// Delete removes the object at p (S3 answers success for a missing key).
func (d *Driver) Delete(ctx context.Context, p string) error {
	k, err := d.key(p)
	if err != nil {
		return err
	}
	if _, err := d.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(d.bucket), Key: aws.String(k)}); err != nil && !notFound(err) {
		return d.fail("delete", p, err)
	}
	return nil
}

// Walk lists the objects whose path starts with prefix, in lexical order.
func (d *Driver) Walk(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	pages := s3.NewListObjectsV2Paginator(d.c, &s3.ListObjectsV2Input{
		Bucket: aws.String(d.bucket), Prefix: aws.String(d.prefix + prefix),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3: list %q in bucket %s: %w", prefix, d.bucket, err)
		}
		for _, o := range page.Contents {
			p := strings.TrimPrefix(aws.ToString(o.Key), d.prefix)
			if blobstore.CheckPath(p) != nil {
				continue // a directory marker or a key no writer of this driver made
			}
			if err := fn(blobstore.Info{Path: p, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Copy copies the object at src to dst inside the store.
func (d *Driver) Copy(ctx context.Context, src, dst string) error {
	info, err := d.Stat(ctx, src)
	if err != nil {
		return err
	}
	if info.Size > maxCopyPart {
		return d.Compose(ctx, dst, []blobstore.Info{info})
	}
	sk, _ := d.key(src)
	dk, err := d.key(dst)
	if err != nil {
		return err
	}
	_, err = d.c.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: aws.String(d.bucket), Key: aws.String(dk), CopySource: aws.String(d.copySource(sk)),
	})
	if err != nil {
		return d.fail("copy", src, err)
	}
	return nil
}

func (d *Driver) copySource(key string) string {
	return url.PathEscape(d.bucket) + "/" + strings.ReplaceAll(url.PathEscape(key), "%2F", "/")
}

// Compose concatenates srcs into dst with a multipart upload of part copies: nothing passes
// through Coffer. Every source but the last must have at least MinPartSize bytes
// (ErrNotComposable otherwise); sources beyond 5 GiB are copied in ranges.
func (d *Driver) Compose(ctx context.Context, dst string, srcs []blobstore.Info) error {
	dk, err := d.key(dst)
	if err != nil {
		return err
	}
	type part struct {
		key        string
		start, end int64 // inclusive
	}
	var parts []part
	for i, s := range srcs {
		if i < len(srcs)-1 && s.Size < MinPartSize {
			return blobstore.ErrNotComposable
		}
		sk, err := d.key(s.Path)
		if err != nil {
			return err
		}
		for at := int64(0); at < s.Size; at += maxCopyPart {
			parts = append(parts, part{sk, at, min(at+maxCopyPart, s.Size) - 1})
		}
	}
	if len(parts) == 0 {
		return blobstore.ErrNotComposable // only empty sources: nothing to copy
	}
	mp, err := d.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(d.bucket), Key: aws.String(dk)})
	if err != nil {
		return d.fail("compose", dst, err)
	}
	abort := func(err error) error {
		d.c.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: aws.String(d.bucket), Key: aws.String(dk), UploadId: mp.UploadId})
		return d.fail("compose", dst, err)
	}
	done := make([]types.CompletedPart, 0, len(parts))
	for i, p := range parts {
		n := int32(i + 1)
		out, err := d.c.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
			Bucket: aws.String(d.bucket), Key: aws.String(dk), UploadId: mp.UploadId, PartNumber: aws.Int32(n),
			CopySource: aws.String(d.copySource(p.key)), CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", p.start, p.end)),
		})
		if err != nil {
			return abort(err)
		}
		done = append(done, types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(n)})
	}
	if _, err := d.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(d.bucket), Key: aws.String(dk), UploadId: mp.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done},
	}); err != nil {
		return abort(err)
	}
	return nil
}

// writer buffers a part and sends full parts as it goes: one part is sent in the background
// while the next one fills, so the caller's sealing overlaps the network.
type writer struct {
	d        *Driver
	ctx      context.Context
	path     string
	key      string
	buf      []byte
	size     int64
	uploadID *string // the multipart upload, once the first part is full
	next     int32   // number of the next part
	done     bool

	sending chan []byte    // holds the buffer of the part in flight (capacity 1)
	spare   []byte         // a buffer a sent part has released
	wg      sync.WaitGroup // the part in flight
	mu      sync.Mutex
	parts   []types.CompletedPart
	err     error // sticky: a part failed
}

func (w *writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("s3: write %s: writer closed", w.path)
	}
	if err := w.failed(); err != nil {
		return 0, err
	}
	written := 0
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = w.takeBuffer()
		}
		n := min(len(p), int(w.d.partSize)-len(w.buf))
		w.buf = append(w.buf, p[:n]...)
		p, written, w.size = p[n:], written+n, w.size+int64(n)
		if int64(len(w.buf)) == w.d.partSize {
			if err := w.sendPart(w.ctx, true); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (w *writer) takeBuffer() []byte {
	if b := w.spare; b != nil {
		w.spare = nil
		return b[:0]
	}
	return make([]byte, 0, w.d.partSize)
}

func (w *writer) Size() int64 { return w.size }

// sendPart uploads the buffer as the next part, starting the multipart upload if needed:
// in the background (after the part before it has gone) with async, else before it returns.
func (w *writer) sendPart(ctx context.Context, async bool) error {
	if w.uploadID == nil {
		mp, err := w.d.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(w.d.bucket), Key: aws.String(w.key)})
		if err != nil {
			return w.d.fail("write", w.path, err)
		}
		w.uploadID = mp.UploadId
		w.sending = make(chan []byte, 1)
	}
	w.wait() // one part in flight at a time
	if err := w.failed(); err != nil {
		return err
	}
	w.next++
	n, body := w.next, w.buf
	w.buf = nil
	send := func() {
		out, err := w.d.c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(w.d.bucket), Key: aws.String(w.key), UploadId: w.uploadID, PartNumber: aws.Int32(n),
			Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
		})
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil {
			if w.err == nil {
				w.err = w.d.fail("write", w.path, err)
			}
			return
		}
		w.parts = append(w.parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)})
	}
	if !async {
		send()
		w.spare = body
		return w.failed()
	}
	w.sending <- body
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		send()
	}()
	return nil
}

// wait lets the part in flight finish and takes its buffer back.
func (w *writer) wait() {
	if w.sending == nil {
		return
	}
	w.wg.Wait()
	select {
	case b := <-w.sending:
		w.spare = b
	default:
	}
}

func (w *writer) Commit(ctx context.Context) error { return w.CommitAt(ctx, w.path) }

// CommitAt makes the object visible at dst: a PutObject there for an object smaller than a
// part; for a multipart one, the upload is completed at its own key and copied to dst
// inside the store.
func (w *writer) CommitAt(ctx context.Context, dst string) error {
	if w.done {
		return fmt.Errorf("s3: commit %s: writer closed", w.path)
	}
	w.wait()
	if err := w.failed(); err != nil {
		return err
	}
	dk, err := w.d.key(dst)
	if err != nil {
		return err
	}
	if w.uploadID == nil {
		w.done = true
		_, err := w.d.c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(w.d.bucket), Key: aws.String(dk),
			Body: bytes.NewReader(w.buf), ContentLength: aws.Int64(int64(len(w.buf))),
		})
		w.buf = nil
		if err != nil {
			return w.d.fail("commit", dst, err)
		}
		return nil
	}
	if len(w.buf) > 0 {
		if err := w.sendPart(ctx, false); err != nil {
			return err
		}
	}
	w.done = true
	w.buf, w.spare = nil, nil
	slices.SortFunc(w.parts, func(a, b types.CompletedPart) int { return int(aws.ToInt32(a.PartNumber) - aws.ToInt32(b.PartNumber)) })
	if _, err := w.d.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(w.d.bucket), Key: aws.String(w.key), UploadId: w.uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: w.parts},
	}); err != nil {
		w.abort(ctx)
		return w.d.fail("commit", w.path, err)
	}
	if dk == w.key {
		return nil
	}
	if err := w.d.Copy(ctx, w.path, dst); err != nil {
		w.d.Delete(context.WithoutCancel(ctx), w.path)
		return err
	}
	return w.d.Delete(ctx, w.path)
}

func (w *writer) abort(ctx context.Context) error {
	if w.uploadID == nil {
		return nil
	}
	id := w.uploadID
	w.uploadID = nil
	if _, err := w.d.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(w.d.bucket), Key: aws.String(w.key), UploadId: id}); err != nil && !notFound(err) {
		return w.d.fail("abort the upload of", w.path, err)
	}
	return nil
}

// Cancel discards the object.
func (w *writer) Cancel(ctx context.Context) error {
	if w.done {
		return nil
	}
	w.done, w.buf = true, nil
	w.wait()
	w.spare = nil
	return w.abort(ctx)
}

// Close without Commit discards the object (the driver is not a Resumer).
func (w *writer) Close() error {
	return w.Cancel(w.ctx)
}
