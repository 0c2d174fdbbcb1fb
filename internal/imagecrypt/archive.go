package imagecrypt

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"
)

// readDockerArchive copies the first image of a `docker save` tarball into an OCI layout
// under tmp (tagged "latest") and opens it. Its blobs stay in Docker's media types until
// encryption converts them.
func readDockerArchive(ctx context.Context, file, tmp string) (oras.Target, error) {
	img, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		return nil, fmt.Errorf("read docker archive %s: %w", file, err)
	}
	dir := filepath.Join(tmp, "archive")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "latest"})); err != nil {
		return nil, fmt.Errorf("read docker archive %s: %w", file, err)
	}
	return oci.NewWithContext(ctx, dir)
}
