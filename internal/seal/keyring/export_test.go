package keyring_test

import (
	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/seal"
)

func innerOf(d blobstore.Driver) blobstore.Driver { return d.(*seal.Driver).Inner() }
