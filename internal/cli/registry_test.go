package cli_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/servertest"
)

func TestRegistryCommands(t *testing.T) {
	inst := servertest.Start(t, nil)
	asAdmin(t, inst)

	// Push an image with two tags through the registry API.
	req, _ := http.NewRequest("GET", inst.URL+"/oauth2/token?service=coffer-registry&scope="+url.QueryEscape("repository:team/app:pull,push"), nil)
	req.SetBasicAuth("admin", inst.AdminPassword)
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tr struct {
		Token string `json:"token"`
	}
	json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	send := func(method, path string, body []byte, ct string) int {
		r, _ := http.NewRequest(method, inst.URL+path, bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tr.Token)
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		resp, err := inst.Client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	cfg := []byte(`{"cli":true}`)
	if st := send("POST", "/v2/team/app/blobs/uploads/?digest="+digest.FromBytes(cfg).String(), cfg, ""); st != 201 {
		t.Fatalf("push blob: %d", st)
	}
	loose := []byte("unreferenced")
	send("POST", "/v2/team/app/blobs/uploads/?digest="+digest.FromBytes(loose).String(), loose, "")
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest.FromBytes(cfg), "size": len(cfg)},
		"layers": []any{}})
	for _, tag := range []string{"v1", "latest"} {
		if st := send("PUT", "/v2/team/app/manifests/"+tag, m, "application/vnd.oci.image.manifest.v1+json"); st != 201 {
			t.Fatalf("push manifest: %d", st)
		}
	}

	repos := jsonOf[[]struct {
		Name          string `json:"name"`
		ManifestCount int    `json:"manifestCount"`
		TagCount      int    `json:"tagCount"`
		BlobCount     int    `json:"blobCount"`
	}](t, mustCoffer(t, "", "registry", "repo", "list", "-o", "json"))
	if len(repos) != 1 || repos[0].Name != "team/app" || repos[0].ManifestCount != 1 || repos[0].TagCount != 2 || repos[0].BlobCount != 2 {
		t.Fatalf("repo list = %+v", repos)
	}
	if table := mustCoffer(t, "", "registry", "repo", "show", "team/app"); !strings.Contains(table, "team/app") || !strings.Contains(table, "MANIFESTS") {
		t.Fatalf("repo show table:\n%s", table)
	}
	tags := jsonOf[[]struct {
		Name   string `json:"name"`
		Digest string `json:"digest"`
	}](t, mustCoffer(t, "", "registry", "tag", "list", "team/app", "-o", "json"))
	if len(tags) != 2 || tags[0].Name != "latest" || tags[0].Digest != digest.FromBytes(m).String() {
		t.Fatalf("tag list = %+v", tags)
	}
	mustCoffer(t, "", "registry", "tag", "delete", "team/app", "latest")
	if table := mustCoffer(t, "", "registry", "tag", "list", "team/app"); strings.Contains(table, "latest") || !strings.Contains(table, "v1") {
		t.Fatalf("tag list after delete:\n%s", table)
	}
	if _, err := coffer(t, "", "registry", "tag", "delete", "team/app", "latest"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("deleting a missing tag: %v", err)
	}
	// A dry run within the grace period finds nothing and removes nothing.
	rep := jsonOf[struct {
		DryRun bool `json:"dryRun"`
	}](t, mustCoffer(t, "", "registry", "gc", "--dry-run", "-o", "json"))
	if !rep.DryRun {
		t.Fatalf("gc --dry-run report: %+v", rep)
	}
	if table := mustCoffer(t, "", "registry", "gc"); !strings.Contains(table, "Removed blobs") {
		t.Fatalf("gc table:\n%s", table)
	}
	if _, err := coffer(t, "", "registry", "repo", "delete", "team/app"); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("delete without --yes: %v", err)
	}
	mustCoffer(t, "", "registry", "repo", "delete", "team/app", "--yes")
	if _, err := coffer(t, "", "registry", "repo", "show", "team/app"); err == nil {
		t.Fatal("deleted repository still shows")
	}
	if st := send("GET", "/v2/team/app/manifests/v1", nil, ""); st != 404 {
		t.Fatalf("deleted repository still serves: %d", st)
	}
}
