package api_test

import (
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/mgmt/wire/wiretest"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/api"
)

func TestManagementWireTypesEncodeAsTheRegistryTypesDid(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	same := func(name string, domain, onWire any) { t.Helper(); wiretest.SameJSON(t, name, domain, onWire) }
	info := registry.RepositoryInfo{Name: "a/b", Created: now, ManifestCount: 1, TagCount: 2, BlobCount: 3, Size: 4}
	same("repository", info, api.RepositoryOut(info))
	same("repository", registry.RepositoryInfo{}, api.RepositoryOut(registry.RepositoryInfo{}))
	for _, blobs := range [][]registry.BlobInfo{nil, {}, {{Digest: digest.FromString("x"), Size: 5, Touched: now}}} {
		rep := registry.GCReport{DryRun: true, Cutoff: now, StaleLinks: 1, Blobs: blobs, BytesFreed: 2, OrphanFiles: 3, ExpiredUploads: 4}
		same("gc report", rep, api.GCReportOut(rep))
	}
	tag := registry.TagInfo{Name: "v1", Digest: digest.FromString("y"), Updated: now}
	same("tag", tag, wire.Tag{Name: tag.Name, Digest: string(tag.Digest), Updated: tag.Updated})
}
