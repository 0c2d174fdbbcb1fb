package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
	"github.com/cofferhq/coffer/internal/blobstore/s3"
)

// blobStore opens the driver that holds the registry's (sealed) bytes: the filesystem under
// the data directory, or the S3 bucket --blob-store names.
func (s *Server) blobStore(ctx context.Context) (blobstore.Driver, error) {
	c := s.cfg.BlobStore
	if c.URL == "" {
		if c.S3Endpoint != "" || c.S3AccessKeyID != "" || c.S3SecretAccessKeyFile != "" {
			return nil, errors.New("registry blob store: --s3-* settings are given but --blob-store is not s3://BUCKET[/PREFIX]")
		}
		return filesystem.New(filepath.Join(s.cfg.DataDir, "blobs"))
	}
	if !strings.HasPrefix(c.URL, "s3://") {
		return nil, fmt.Errorf("registry blob store %q: want s3://BUCKET[/PREFIX], or no --blob-store for the data directory", c.URL)
	}
	bucket, prefix, err := s3.ParseURL(c.URL)
	if err != nil {
		return nil, err
	}
	o := s3.Options{Bucket: bucket, Prefix: prefix, Endpoint: c.S3Endpoint, Region: c.S3Region,
		PathStyle: c.S3PathStyle, AccessKeyID: c.S3AccessKeyID}
	if c.S3SecretAccessKeyFile != "" {
		if o.SecretAccessKey, err = readSecretFile(c.S3SecretAccessKeyFile); err != nil {
			return nil, fmt.Errorf("registry blob store: --s3-secret-access-key-file: %w", err)
		}
	}
	d, err := s3.New(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("registry blob store %s: %w", c.URL, err)
	}
	s.log.Info("registry blob store", "url", c.URL, "endpoint", c.S3Endpoint)
	return d, nil
}

// readSecretFile reads a secret from a file that only its owner may read.
func readSecretFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return secret, nil
}
