// Package metadatatest is the shared behaviour suite of registry.Metadata: every
// implementation (SQLite, PostgreSQL, any later one) runs the same subtests, so a second
// engine is proven by the suite rather than by reading its SQL. zot's RunMetaDBTests is
// the model.
package metadatatest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/registry"
)

// Open returns a new, empty store for one subtest (closing it when t ends).
type Open func(t *testing.T) registry.Metadata

// t0 is a fixed clock start; times are stored to the nanosecond.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

func dg(s string) digest.Digest { return digest.FromString(s) }

func blob(s string, size int64) registry.BlobInfo {
	return registry.BlobInfo{Digest: dg(s), Size: size}
}

func manifest(repo, s string, size int64) registry.ManifestRecord {
	return registry.ManifestRecord{Repo: repo, Digest: dg(s), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: size}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func notFound(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("%s: want ErrNotFound, got %v", what, err)
	}
}

// Run runs every subtest against stores from open.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, m registry.Metadata)
	}{
		{"LinkBlob", testLinkBlob},
		{"UnlinkBlobRefusedWhileReferenced", testUnlinkReferenced},
		{"PutManifestChecksReferences", testPutManifestChecks},
		{"ManifestTagsAndDelete", testManifestTagsDelete},
		{"TagsPagination", testTagsPagination},
		{"RepositoriesAndInfo", testRepositories},
		{"DeleteRepository", testDeleteRepository},
		{"Referrers", testReferrers},
		{"Uploads", testUploads},
		{"GarbageCollection", testGarbage},
		{"StaleLinks", testStaleLinks},
		{"LargeValues", testLargeValues},
		{"ConcurrentLinksAndManifests", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, t.Context(), open(t))
		})
	}
}

func testLinkBlob(t *testing.T, ctx context.Context, m registry.Metadata) {
	if _, err := m.RepoBlob(ctx, "a/b", dg("x")); err != nil {
		notFound(t, err, "RepoBlob before link")
	} else {
		t.Fatal("RepoBlob found an unlinked blob")
	}
	if ok, err := m.BlobKnown(ctx, dg("x")); err != nil || ok {
		t.Fatalf("BlobKnown before link: %v, %v", ok, err)
	}
	must(t, m.LinkBlob(ctx, "a/b", blob("x", 5), t0))
	must(t, m.LinkBlob(ctx, "c", blob("x", 5), t0.Add(time.Second)))
	// Relinking refreshes the touch time.
	must(t, m.LinkBlob(ctx, "a/b", blob("x", 5), t0.Add(2*time.Second)))
	b, err := m.RepoBlob(ctx, "a/b", dg("x"))
	must(t, err)
	if b.Digest != dg("x") || b.Size != 5 || !b.Touched.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("RepoBlob = %+v", b)
	}
	repos, err := m.ReposWithBlob(ctx, dg("x"))
	must(t, err)
	if !slices.Equal(repos, []string{"a/b", "c"}) {
		t.Fatalf("ReposWithBlob = %v", repos)
	}
	if ok, err := m.BlobKnown(ctx, dg("x")); err != nil || !ok {
		t.Fatalf("BlobKnown: %v, %v", ok, err)
	}
	if ok, err := m.RepositoryExists(ctx, "a/b"); err != nil || !ok {
		t.Fatalf("LinkBlob did not create the repository: %v, %v", ok, err)
	}
	ok, err := m.UnlinkBlob(ctx, "c", dg("x"))
	if err != nil || !ok {
		t.Fatalf("UnlinkBlob: %v, %v", ok, err)
	}
	if ok, err := m.UnlinkBlob(ctx, "c", dg("x")); err != nil || ok {
		t.Fatalf("second UnlinkBlob: %v, %v", ok, err)
	}
	_, err = m.RepoBlob(ctx, "c", dg("x"))
	notFound(t, err, "RepoBlob after unlink")
	// CompleteUpload links and ends the session in one step.
	must(t, m.CreateUpload(ctx, registry.Upload{ID: "u1", Repo: "c", Created: t0, Updated: t0}))
	must(t, m.CompleteUpload(ctx, "u1", "c", blob("y", 7), t0))
	if _, err := m.RepoBlob(ctx, "c", dg("y")); err != nil {
		t.Fatalf("CompleteUpload did not link: %v", err)
	}
	_, err = m.Upload(ctx, "u1")
	notFound(t, err, "Upload after CompleteUpload")
}

func testUnlinkReferenced(t *testing.T, ctx context.Context, m registry.Metadata) {
	must(t, m.LinkBlob(ctx, "r", blob("layer", 10), t0))
	must(t, m.PutManifest(ctx, manifest("r", "m", 100), []registry.Reference{{Digest: dg("layer"), Size: 10}}, nil, t0))
	_, err := m.UnlinkBlob(ctx, "r", dg("layer"))
	var re *registry.ReferencedError
	if !errors.As(err, &re) || !slices.Equal(re.By, []digest.Digest{dg("m")}) {
		t.Fatalf("UnlinkBlob of a referenced blob: %v", err)
	}
	if _, err := m.RepoBlob(ctx, "r", dg("layer")); err != nil {
		t.Fatalf("a refused unlink removed the link: %v", err)
	}
}

func testPutManifestChecks(t *testing.T, ctx context.Context, m registry.Metadata) {
	must(t, m.LinkBlob(ctx, "r", blob("cfg", 3), t0))
	err := m.PutManifest(ctx, manifest("r", "m", 50), []registry.Reference{
		{Digest: dg("cfg"), Size: 3, Field: "config"}, {Digest: dg("gone"), Size: 1, Field: "layers[0]"},
	}, []string{"v1"}, t0)
	var me *registry.MissingError
	if !errors.As(err, &me) || len(me.Missing) != 1 || me.Missing[0].Field != "layers[0]" {
		t.Fatalf("PutManifest with a missing layer: %v", err)
	}
	err = m.PutManifest(ctx, manifest("r", "m", 50), []registry.Reference{{Digest: dg("cfg"), Size: 4, Field: "config"}}, nil, t0)
	var mm *registry.MismatchError
	if !errors.As(err, &mm) || len(mm.Mismatched) != 1 || mm.Mismatched[0].Stored != 3 {
		t.Fatalf("PutManifest with a wrong size: %v", err)
	}
	// A blob linked to another repository does not satisfy this one.
	must(t, m.LinkBlob(ctx, "other", blob("elsewhere", 2), t0))
	err = m.PutManifest(ctx, manifest("r", "m", 50), []registry.Reference{{Digest: dg("elsewhere"), Size: 2}}, nil, t0)
	if !errors.As(err, &me) {
		t.Fatalf("PutManifest with a blob of another repository: %v", err)
	}
	// Nothing of the refused manifests was recorded.
	_, err = m.Manifest(ctx, "r", dg("m"))
	notFound(t, err, "Manifest after refused puts")
	_, err = m.Tag(ctx, "r", "v1")
	notFound(t, err, "Tag after refused put")
	// An index needs its child manifests in the repository, by manifest size.
	must(t, m.PutManifest(ctx, manifest("r", "child", 30), []registry.Reference{{Digest: dg("cfg"), Size: 3}}, nil, t0))
	err = m.PutManifest(ctx, manifest("r", "index", 60), []registry.Reference{{Digest: dg("child"), Manifest: true, Size: 30}}, nil, t0)
	must(t, err)
	err = m.PutManifest(ctx, manifest("r", "index2", 60), []registry.Reference{{Digest: dg("cfg"), Manifest: true, Size: 3}}, nil, t0)
	if !errors.As(err, &me) {
		t.Fatalf("an index listing a blob as a manifest: %v", err)
	}
}

func testManifestTagsDelete(t *testing.T, ctx context.Context, m registry.Metadata) {
	rec := manifest("r", "m", 42)
	rec.ArtifactType = "application/example"
	must(t, m.PutManifest(ctx, rec, nil, []string{"latest", "v1"}, t0))
	got, err := m.Manifest(ctx, "r", dg("m"))
	must(t, err)
	if got.Digest != rec.Digest || got.Size != 42 || got.MediaType != rec.MediaType || got.ArtifactType != rec.ArtifactType ||
		got.Subject != "" || !got.Created.Equal(t0) || got.Repo != "r" {
		t.Fatalf("Manifest = %+v", got)
	}
	_, err = m.Manifest(ctx, "other", dg("m"))
	notFound(t, err, "Manifest in another repository")
	d, err := m.Tag(ctx, "r", "v1")
	if err != nil || d != dg("m") {
		t.Fatalf("Tag = %v, %v", d, err)
	}
	// Retagging moves the tag.
	must(t, m.PutManifest(ctx, manifest("r", "m2", 43), nil, []string{"v1"}, t0.Add(time.Minute)))
	if d, _ := m.Tag(ctx, "r", "v1"); d != dg("m2") {
		t.Fatalf("retagged v1 = %v", d)
	}
	details, err := m.TagDetails(ctx, "r")
	must(t, err)
	want := []registry.TagInfo{{Name: "latest", Digest: dg("m"), Updated: t0}, {Name: "v1", Digest: dg("m2"), Updated: t0.Add(time.Minute)}}
	if len(details) != 2 || details[0].Name != want[0].Name || details[0].Digest != want[0].Digest || !details[0].Updated.Equal(want[0].Updated) ||
		details[1].Name != want[1].Name || details[1].Digest != want[1].Digest || !details[1].Updated.Equal(want[1].Updated) {
		t.Fatalf("TagDetails = %+v", details)
	}
	if ok, err := m.DeleteTag(ctx, "r", "v1"); err != nil || !ok {
		t.Fatalf("DeleteTag: %v, %v", ok, err)
	}
	if ok, err := m.DeleteTag(ctx, "r", "v1"); err != nil || ok {
		t.Fatalf("second DeleteTag: %v, %v", ok, err)
	}
	// An index of the repository protects its child from deletion.
	must(t, m.PutManifest(ctx, manifest("r", "idx", 10), []registry.Reference{{Digest: dg("m"), Manifest: true, Size: 42}}, nil, t0))
	_, err = m.DeleteManifest(ctx, "r", dg("m"))
	var re *registry.ReferencedError
	if !errors.As(err, &re) || !slices.Equal(re.By, []digest.Digest{dg("idx")}) {
		t.Fatalf("DeleteManifest of an index's child: %v", err)
	}
	if ok, err := m.DeleteManifest(ctx, "r", dg("idx")); err != nil || !ok {
		t.Fatalf("DeleteManifest idx: %v, %v", ok, err)
	}
	if ok, err := m.DeleteManifest(ctx, "r", dg("m")); err != nil || !ok {
		t.Fatalf("DeleteManifest m: %v, %v", ok, err)
	}
	_, err = m.Tag(ctx, "r", "latest")
	notFound(t, err, "a deleted manifest's tag")
	if ok, err := m.DeleteManifest(ctx, "r", dg("m")); err != nil || ok {
		t.Fatalf("second DeleteManifest: %v, %v", ok, err)
	}
}

func testTagsPagination(t *testing.T, ctx context.Context, m registry.Metadata) {
	// Bytewise order, whatever the database's locale: upper case before lower, '-' and
	// '.' before digits, as the distribution spec's lexical order.
	names := []string{"b", "B", "a-1", "a.1", "a1", "A", "_x", "z9", "Z"}
	must(t, m.PutManifest(ctx, manifest("r", "m", 1), nil, names, t0))
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	all, err := m.Tags(ctx, "r", "", -1)
	must(t, err)
	if !slices.Equal(all, sorted) {
		t.Fatalf("Tags(all) = %v, want %v", all, sorted)
	}
	var paged []string
	last := ""
	for {
		page, err := m.Tags(ctx, "r", last, 2)
		must(t, err)
		if len(page) == 0 {
			break
		}
		if len(page) > 2 {
			t.Fatalf("page of %d with n=2", len(page))
		}
		paged = append(paged, page...)
		last = page[len(page)-1]
	}
	if !slices.Equal(paged, sorted) {
		t.Fatalf("paged Tags = %v, want %v", paged, sorted)
	}
	if none, err := m.Tags(ctx, "r", "", 0); err != nil || len(none) != 0 {
		t.Fatalf("Tags(n=0) = %v, %v", none, err)
	}
	if none, err := m.Tags(ctx, "missing", "", -1); err != nil || len(none) != 0 {
		t.Fatalf("Tags of a missing repository = %v, %v", none, err)
	}
}

func testRepositories(t *testing.T, ctx context.Context, m registry.Metadata) {
	for _, r := range []string{"team/b", "team/a", "Alpha", "solo"} {
		must(t, m.LinkBlob(ctx, r, blob(r, 1), t0))
	}
	all, err := m.Repositories(ctx, "", -1)
	must(t, err)
	if !slices.Equal(all, []string{"Alpha", "solo", "team/a", "team/b"}) {
		t.Fatalf("Repositories = %v", all)
	}
	page, err := m.Repositories(ctx, "solo", 1)
	must(t, err)
	if !slices.Equal(page, []string{"team/a"}) {
		t.Fatalf("Repositories after solo = %v", page)
	}
	must(t, m.LinkBlob(ctx, "solo", blob("big", 1000), t0))
	must(t, m.PutManifest(ctx, manifest("solo", "m", 9), []registry.Reference{{Digest: dg("big"), Size: 1000}}, []string{"t1", "t2"}, t0))
	info, err := m.RepositoryInfo(ctx, "solo")
	must(t, err)
	if info.Name != "solo" || !info.Created.Equal(t0) || info.ManifestCount != 1 || info.TagCount != 2 || info.BlobCount != 2 || info.Size != 1001 {
		t.Fatalf("RepositoryInfo = %+v", info)
	}
	// RepositoryInfos gives a page of the same summaries in one query.
	infos, err := m.RepositoryInfos(ctx, "", -1)
	must(t, err)
	if len(infos) != len(all) {
		t.Fatalf("RepositoryInfos = %d summaries, want %d", len(infos), len(all))
	}
	for i, got := range infos {
		want, err := m.RepositoryInfo(ctx, all[i])
		must(t, err)
		if got.Name != want.Name || !got.Created.Equal(want.Created) || got.ManifestCount != want.ManifestCount ||
			got.TagCount != want.TagCount || got.BlobCount != want.BlobCount || got.Size != want.Size {
			t.Fatalf("RepositoryInfos[%d] = %+v, RepositoryInfo = %+v", i, got, want)
		}
	}
	if page, err := m.RepositoryInfos(ctx, "solo", 1); err != nil || len(page) != 1 || page[0].Name != "team/a" {
		t.Fatalf("RepositoryInfos after solo = %+v, %v", page, err)
	}
	_, err = m.RepositoryInfo(ctx, "nope")
	notFound(t, err, "RepositoryInfo of a missing repository")
	if ok, err := m.RepositoryExists(ctx, "nope"); err != nil || ok {
		t.Fatalf("RepositoryExists(nope) = %v, %v", ok, err)
	}
}

func testDeleteRepository(t *testing.T, ctx context.Context, m registry.Metadata) {
	must(t, m.LinkBlob(ctx, "r", blob("l", 1), t0))
	must(t, m.LinkBlob(ctx, "keep", blob("l", 1), t0))
	must(t, m.PutManifest(ctx, manifest("r", "m", 2), []registry.Reference{{Digest: dg("l"), Size: 1}}, []string{"v"}, t0))
	must(t, m.CreateUpload(ctx, registry.Upload{ID: "up-a", Repo: "r", Created: t0, Updated: t0}))
	must(t, m.CreateUpload(ctx, registry.Upload{ID: "up-b", Repo: "keep", Created: t0, Updated: t0}))
	uploads, found, err := m.DeleteRepository(ctx, "r")
	must(t, err)
	if !found || !slices.Equal(uploads, []string{"up-a"}) {
		t.Fatalf("DeleteRepository = %v, %v", uploads, found)
	}
	if ok, _ := m.RepositoryExists(ctx, "r"); ok {
		t.Fatal("repository still exists")
	}
	_, err = m.Manifest(ctx, "r", dg("m"))
	notFound(t, err, "manifest of a deleted repository")
	_, err = m.Tag(ctx, "r", "v")
	notFound(t, err, "tag of a deleted repository")
	_, err = m.RepoBlob(ctx, "r", dg("l"))
	notFound(t, err, "link of a deleted repository")
	_, err = m.Upload(ctx, "up-a")
	notFound(t, err, "upload of a deleted repository")
	if _, err := m.Upload(ctx, "up-b"); err != nil {
		t.Fatalf("another repository's upload went: %v", err)
	}
	if _, err := m.RepoBlob(ctx, "keep", dg("l")); err != nil {
		t.Fatalf("another repository's link went: %v", err)
	}
	if _, found, err := m.DeleteRepository(ctx, "r"); err != nil || found {
		t.Fatalf("second DeleteRepository: %v, %v", found, err)
	}
}

func testReferrers(t *testing.T, ctx context.Context, m registry.Metadata) {
	must(t, m.PutManifest(ctx, manifest("r", "subject", 5), nil, nil, t0))
	for i, at := range []string{"application/sig", "application/sbom", "application/sig"} {
		rec := manifest("r", fmt.Sprint("ref", i), int64(10+i))
		rec.Subject, rec.ArtifactType = dg("subject"), at
		must(t, m.PutManifest(ctx, rec, nil, nil, t0.Add(time.Duration(i)*time.Second)))
	}
	other := manifest("other", "ref9", 1)
	other.Subject = dg("subject")
	must(t, m.PutManifest(ctx, other, nil, nil, t0))
	all, err := m.Referrers(ctx, "r", dg("subject"), "")
	must(t, err)
	if len(all) != 3 || all[0].Digest != dg("ref0") || all[2].Digest != dg("ref2") || all[1].ArtifactType != "application/sbom" || all[0].Subject != dg("subject") {
		t.Fatalf("Referrers = %+v", all)
	}
	sigs, err := m.Referrers(ctx, "r", dg("subject"), "application/sig")
	must(t, err)
	if len(sigs) != 2 || sigs[0].Digest != dg("ref0") || sigs[1].Digest != dg("ref2") {
		t.Fatalf("Referrers(sig) = %+v", sigs)
	}
	if none, err := m.Referrers(ctx, "r", dg("nothing"), ""); err != nil || len(none) != 0 {
		t.Fatalf("Referrers of a lone manifest = %v, %v", none, err)
	}
}

func testUploads(t *testing.T, ctx context.Context, m registry.Metadata) {
	u := registry.Upload{ID: "s1", Repo: "r", Offset: 0, Created: t0, Updated: t0}
	must(t, m.CreateUpload(ctx, u))
	if err := m.CreateUpload(ctx, u); err == nil {
		t.Fatal("a second session with the same id was accepted")
	}
	u.Offset, u.Updated = 1<<40, t0.Add(time.Hour)
	must(t, m.UpdateUpload(ctx, u))
	got, err := m.Upload(ctx, "s1")
	must(t, err)
	if got.Repo != "r" || got.Offset != 1<<40 || !got.Created.Equal(t0) || !got.Updated.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Upload = %+v", got)
	}
	notFound(t, m.UpdateUpload(ctx, registry.Upload{ID: "missing", Updated: t0}), "UpdateUpload of a missing session")
	must(t, m.CreateUpload(ctx, registry.Upload{ID: "s2", Repo: "q", Created: t0, Updated: t0}))
	old, err := m.UploadsBefore(ctx, t0.Add(time.Minute))
	must(t, err)
	if len(old) != 1 || old[0].ID != "s2" || old[0].Repo != "q" {
		t.Fatalf("UploadsBefore = %+v", old)
	}
	must(t, m.DeleteUpload(ctx, "s2"))
	must(t, m.DeleteUpload(ctx, "s2")) // deleting a gone session is not an error
	_, err = m.Upload(ctx, "s2")
	notFound(t, err, "deleted upload")
}

func testGarbage(t *testing.T, ctx context.Context, m registry.Metadata) {
	cutoff := t0.Add(time.Hour)
	must(t, m.LinkBlob(ctx, "r", blob("orphan", 1), t0))
	must(t, m.LinkBlob(ctx, "r", blob("used", 2), t0))
	must(t, m.PutManifest(ctx, manifest("r", "m", 3), []registry.Reference{{Digest: dg("used"), Size: 2}}, nil, t0))
	must(t, m.LinkBlob(ctx, "r", blob("fresh", 4), cutoff.Add(time.Minute)))
	garbage, err := m.GarbageBlobs(ctx, cutoff)
	must(t, err)
	if len(garbage) != 1 || garbage[0].Digest != dg("orphan") || garbage[0].Size != 1 || !garbage[0].Touched.Equal(t0) {
		t.Fatalf("GarbageBlobs = %+v", garbage)
	}
	// A blob relinked after the listing is no longer garbage: the re-check keeps it.
	must(t, m.LinkBlob(ctx, "r", blob("orphan", 1), cutoff.Add(time.Minute)))
	if ok, err := m.DeleteBlobIfGarbage(ctx, dg("orphan"), cutoff); err != nil || ok {
		t.Fatalf("DeleteBlobIfGarbage of a relinked blob: %v, %v", ok, err)
	}
	if ok, err := m.DeleteBlobIfGarbage(ctx, dg("used"), cutoff); err != nil || ok {
		t.Fatalf("DeleteBlobIfGarbage of a referenced blob: %v, %v", ok, err)
	}
	if ok, err := m.DeleteBlobIfGarbage(ctx, dg("m"), cutoff); err != nil || ok {
		t.Fatalf("DeleteBlobIfGarbage of a manifest's own blob: %v, %v", ok, err)
	}
	later := cutoff.Add(time.Hour)
	_, err = m.UnlinkBlob(ctx, "r", dg("orphan"))
	must(t, err)
	garbage, err = m.GarbageBlobs(ctx, later)
	must(t, err)
	if len(garbage) != 2 || garbage[0].Digest > garbage[1].Digest {
		t.Fatalf("GarbageBlobs later = %+v", garbage)
	}
	ok, err := m.DeleteBlobIfGarbage(ctx, dg("orphan"), later)
	if err != nil || !ok {
		t.Fatalf("DeleteBlobIfGarbage: %v, %v", ok, err)
	}
	if known, _ := m.BlobKnown(ctx, dg("orphan")); known {
		t.Fatal("a deleted blob is still known")
	}
	// Its links went with it.
	if repos, _ := m.ReposWithBlob(ctx, dg("orphan")); len(repos) != 0 {
		t.Fatalf("links of a deleted blob: %v", repos)
	}
}

func testStaleLinks(t *testing.T, ctx context.Context, m registry.Metadata) {
	cutoff := t0.Add(time.Hour)
	must(t, m.LinkBlob(ctx, "r", blob("stale", 1), t0))
	must(t, m.LinkBlob(ctx, "r", blob("needed", 2), t0))
	must(t, m.PutManifest(ctx, manifest("r", "m", 3), []registry.Reference{{Digest: dg("needed"), Size: 2}}, nil, t0))
	must(t, m.LinkBlob(ctx, "r", blob("recent", 3), cutoff))
	n, err := m.StaleLinks(ctx, cutoff, false)
	if err != nil || n != 1 {
		t.Fatalf("StaleLinks(count) = %d, %v", n, err)
	}
	if _, err := m.RepoBlob(ctx, "r", dg("stale")); err != nil {
		t.Fatalf("counting removed a link: %v", err)
	}
	n, err = m.StaleLinks(ctx, cutoff, true)
	if err != nil || n != 1 {
		t.Fatalf("StaleLinks(delete) = %d, %v", n, err)
	}
	_, err = m.RepoBlob(ctx, "r", dg("stale"))
	notFound(t, err, "a removed stale link")
	for _, keep := range []string{"needed", "recent"} {
		if _, err := m.RepoBlob(ctx, "r", dg(keep)); err != nil {
			t.Fatalf("StaleLinks removed %s: %v", keep, err)
		}
	}
}

// testLargeValues: sizes and times beyond 32 bits (a 32-bit INTEGER column would fail).
func testLargeValues(t *testing.T, ctx context.Context, m registry.Metadata) {
	big := blob("huge", 5<<40)
	when := time.Date(2262, 1, 1, 0, 0, 0, 123, time.UTC)
	must(t, m.LinkBlob(ctx, "r", big, when))
	b, err := m.RepoBlob(ctx, "r", big.Digest)
	must(t, err)
	if b.Size != 5<<40 || !b.Touched.Equal(when) {
		t.Fatalf("RepoBlob = %+v", b)
	}
}

// testConcurrent: links and manifests from many goroutines, as concurrent pushes do; all
// succeed (the store retries or serialises contention itself) and all are recorded.
func testConcurrent(t *testing.T, ctx context.Context, m registry.Metadata) {
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := blob(fmt.Sprint("layer", i), int64(i+1))
			if err := m.LinkBlob(ctx, "r", l, t0); err != nil {
				errs <- err
				return
			}
			errs <- m.PutManifest(ctx, manifest("r", fmt.Sprint("m", i), 10), []registry.Reference{{Digest: l.Digest, Size: l.Size}},
				[]string{fmt.Sprint("t", i), "latest"}, t0)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent push: %v", err)
		}
	}
	tags, err := m.Tags(ctx, "r", "", -1)
	must(t, err)
	if len(tags) != n+1 {
		t.Fatalf("%d tags after %d concurrent pushes", len(tags), n)
	}
	info, err := m.RepositoryInfo(ctx, "r")
	must(t, err)
	if info.ManifestCount != n || info.BlobCount != n {
		t.Fatalf("RepositoryInfo after concurrent pushes = %+v", info)
	}
}
