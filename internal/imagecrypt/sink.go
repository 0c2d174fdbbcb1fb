package imagecrypt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
)

// A sink receives the new blobs of a run. A layer is written once, while it is encrypted or
// decrypted, into a private file of the sink that the destination does not show; commit
// makes the files visible only after every layer of every image passed, and discard
// removes them when one failed. Nothing is fsync'd per layer: finish makes the whole
// destination durable once, before the tag that points at it is written.
type sink interface {
	// create returns a new private (0600) file for one blob.
	create() (*os.File, error)
	// commit makes the blobs visible in dst.
	commit(ctx context.Context, dst oras.Target, blobs []stagedLayer) error
	// durable flushes the blobs written so far (before the tag is written).
	durable(images []*stagedImage) error
	// finish flushes the tag.
	finish() error
	// discard removes the private files (and a destination this run created).
	discard()
}

// newSink returns the sink for a destination: inside an OCI layout, the blob is written in
// the layout's ingest directory and renamed into blobs/ (one write); for a registry, into
// a private file under tmp and pushed from there.
func newSink(r Ref, tmp string) (sink, error) {
	if r.Transport != OCILayout {
		return &fileSink{dir: tmp}, nil
	}
	s := &layoutSink{root: r.Path}
	if _, err := os.Stat(r.Path); errors.Is(err, os.ErrNotExist) {
		s.created = true
	}
	if err := os.MkdirAll(filepath.Join(r.Path, "ingest"), 0o755); err != nil {
		return nil, fmt.Errorf("create OCI layout %s: %w", r.Path, err)
	}
	if err := os.MkdirAll(filepath.Join(r.Path, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("create OCI layout %s: %w", r.Path, err)
	}
	return s, nil
}

// fileSink stages blobs under a private directory and pushes them at commit (a registry
// upload needs the digest, which is known only at the end of the layer).
type fileSink struct{ dir string }

func (s *fileSink) create() (*os.File, error) { return os.CreateTemp(s.dir, "layer-") }

func (s *fileSink) commit(ctx context.Context, dst oras.Target, blobs []stagedLayer) error {
	for _, b := range blobs {
		if ok, err := dst.Exists(ctx, b.desc); err == nil && ok {
			continue
		}
		f, err := os.Open(b.file)
		if err != nil {
			return err
		}
		err = dst.Push(ctx, b.desc, f)
		f.Close()
		if err != nil && !isExists(err) {
			return fmt.Errorf("layer %s: %w", b.desc.Digest, err)
		}
	}
	return nil
}

func (s *fileSink) durable([]*stagedImage) error { return nil }
func (s *fileSink) finish() error                { return nil }
func (s *fileSink) discard()                     {} // the run's temporary directory goes

// layoutSink writes blobs straight into the destination layout.
type layoutSink struct {
	root    string
	created bool
	files   []string
}

func (s *layoutSink) create() (*os.File, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, "ingest"), "coffer-")
	if err == nil {
		s.files = append(s.files, f.Name())
	}
	return f, err
}

func (s *layoutSink) blobPath(d ocispec.Descriptor) string {
	return filepath.Join(s.root, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded())
}

func (s *layoutSink) commit(_ context.Context, _ oras.Target, blobs []stagedLayer) error {
	for _, b := range blobs {
		target := s.blobPath(b.desc)
		if _, err := os.Stat(target); err == nil {
			os.Remove(b.file) // the same content is there already
			continue
		}
		if err := os.Chmod(b.file, 0o444); err != nil {
			return err
		}
		if err := os.Rename(b.file, target); err != nil {
			return fmt.Errorf("layer %s: %w", b.desc.Digest, err)
		}
	}
	s.files = nil
	return nil
}

// durable fsyncs every blob the images name, then the blob directory.
func (s *layoutSink) durable(images []*stagedImage) error {
	var paths []string
	for _, img := range images {
		paths = append(paths, s.blobPath(img.desc), s.blobPath(img.cdesc))
		for _, l := range img.layers {
			paths = append(paths, s.blobPath(l.desc))
		}
	}
	paths = append(paths, filepath.Join(s.root, "blobs", "sha256"))
	return syncPaths(paths)
}

func (s *layoutSink) finish() error {
	return syncPaths([]string{filepath.Join(s.root, "index.json"), s.root})
}

func (s *layoutSink) discard() {
	if s.created {
		os.RemoveAll(s.root)
		return
	}
	for _, f := range s.files {
		os.Remove(f)
	}
}

func syncPaths(paths []string) error {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("flush %s: %w", p, err)
		}
	}
	return nil
}
