package api_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// tamperEnv pushes content to a real server and changes its stored files underneath, as
// someone with write access to the blob store (a shared bucket, a restored backup, a disk)
// can.
type tamperEnv struct {
	t    *testing.T
	e    *env
	tok  string
	repo string
}

func (te *tamperEnv) do(method, path string, body []byte, hdr map[string]string) (*http.Response, []byte, error) {
	req, _ := http.NewRequest(method, te.e.inst.URL+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+te.tok)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := te.e.inst.Client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// blob pushes content, chunked (POST, PATCH, PUT) or in one request.
func (te *tamperEnv) blob(content []byte, chunked bool) digest.Digest {
	te.t.Helper()
	d := digest.FromBytes(content)
	base := "/v2/" + te.repo + "/blobs/uploads/"
	if !chunked {
		resp, body, err := te.do("POST", base+"?digest="+d.String(), content, nil)
		if err != nil || resp.StatusCode != 201 {
			te.t.Fatalf("push blob: %v %v %s", resp.StatusCode, err, body)
		}
		return d
	}
	resp, body, err := te.do("POST", base, nil, nil)
	if err != nil || resp.StatusCode != 202 {
		te.t.Fatalf("start upload: %v %s", err, body)
	}
	resp, body, err = te.do("PATCH", resp.Header.Get("Location"), content, nil)
	if err != nil || resp.StatusCode != 202 {
		te.t.Fatalf("upload chunk: %v %s", err, body)
	}
	loc := resp.Header.Get("Location")
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	resp, body, err = te.do("PUT", loc+sep+"digest="+d.String(), nil, nil)
	if err != nil || resp.StatusCode != 201 {
		te.t.Fatalf("finish upload: %v %s", err, body)
	}
	return d
}

// image pushes a config blob of the given content and a manifest for it under tag.
func (te *tamperEnv) image(tag string, cfg []byte) (digest.Digest, []byte) {
	te.t.Helper()
	cd := te.blob(cfg, false)
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)},
		"layers": []any{}})
	resp, body, err := te.do("PUT", "/v2/"+te.repo+"/manifests/"+tag, m, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
	if err != nil || resp.StatusCode != 201 {
		te.t.Fatalf("push manifest: %v %s", err, body)
	}
	return digest.FromBytes(m), m
}

// file is where the sealed bytes of d lie on disk.
func (te *tamperEnv) file(d digest.Digest) string {
	hex := d.Encoded()
	return filepath.Join(te.e.inst.DataDir, "blobs", "data", "blobs", string(d.Algorithm()), hex[:2], hex)
}

func (te *tamperEnv) read(d digest.Digest) []byte {
	te.t.Helper()
	b, err := os.ReadFile(te.file(d))
	if err != nil {
		te.t.Fatal(err)
	}
	return b
}

func (te *tamperEnv) write(d digest.Digest, b []byte) {
	te.t.Helper()
	if err := os.WriteFile(te.file(d), b, 0o600); err != nil {
		te.t.Fatal(err)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// tamperCase is one change to the stored files and the request that must notice it.
type tamperCase struct {
	name string
	// tamper changes the files and returns the request to make and the bytes an untampered
	// answer would carry.
	tamper func(te *tamperEnv) (path string, hdr map[string]string, want []byte)
	// cut: the damage lies beyond what the server reads before answering, so a 200 cut
	// short (the body ends before Content-Length) also counts as detected. Otherwise only
	// an error status does.
	cut bool
}

// TestStoredTampering is the tamper suite: every change to the sealed files of the blob
// store is detected when the content is pulled. Detected means an error status (the
// damage is found before the first byte is sent), or, where the damage lies past the
// first megabyte of a blob, a response cut short; never the wrong bytes, and never the
// whole body of another object under the requested digest.
func TestStoredTampering(t *testing.T) {
	e := startEnv(t, nil)
	const repo = "tamper/app"
	te := &tamperEnv{t: t, e: e, repo: repo, tok: e.adminToken(t, "repository:"+repo+":pull,push")}
	const seg, slot, header = 64 << 10, 64<<10 + 28, 48
	blobURL := func(d digest.Digest) string { return "/v2/" + repo + "/blobs/" + d.String() }
	manifestURL := func(ref string) string { return "/v2/" + repo + "/manifests/" + ref }
	accept := map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}
	flipAt := func(off int) func(te *tamperEnv) (string, map[string]string, []byte) {
		return func(te *tamperEnv) (string, map[string]string, []byte) {
			content := randomBytes(5*seg + 100)
			d := te.blob(content, false)
			b := te.read(d)
			b[off] ^= 0x10
			te.write(d, b)
			return blobURL(d), nil, content
		}
	}
	// swapped pushes two blobs of the same size and exchanges their files.
	swapped := func(te *tamperEnv) (digest.Digest, []byte) {
		a, b := randomBytes(3*seg+7), randomBytes(3*seg+7)
		da, db := te.blob(a, true), te.blob(b, true)
		fa, fb := te.read(da), te.read(db)
		te.write(da, fb)
		te.write(db, fa)
		return da, a
	}
	// sameSizeImages pushes prod and old, two manifests of the same size, and copies old's
	// file over prod's: the rollback of a tag to another image.
	sameSizeImages := func(te *tamperEnv, n int) (digest.Digest, []byte) {
		prod, pm := te.image(fmt.Sprintf("prod%d", n), []byte(fmt.Sprintf(`{"build":"new-%d"}`, n)))
		old, om := te.image(fmt.Sprintf("old%d", n), []byte(fmt.Sprintf(`{"build":"old-%d"}`, n)))
		if len(pm) != len(om) {
			t.Fatalf("fixture: manifests of %d and %d bytes", len(pm), len(om))
		}
		te.write(prod, te.read(old))
		return prod, pm
	}
	cases := []tamperCase{
		{name: "blob: bit flip in the first segment", tamper: flipAt(header + 100)},
		{name: "blob: bit flip in the header (object id)", tamper: flipAt(20)},
		{name: "blob: bit flip in the last segment", tamper: flipAt(header + 5*slot + 10)},
		{name: "blob: truncated by a segment", tamper: func(te *tamperEnv) (string, map[string]string, []byte) {
			content := randomBytes(5*seg + 100)
			d := te.blob(content, false)
			te.write(d, te.read(d)[:header+5*slot])
			return blobURL(d), nil, content
		}},
		{name: "blob: bytes appended", tamper: func(te *tamperEnv) (string, map[string]string, []byte) {
			content := randomBytes(5 * seg)
			d := te.blob(content, false)
			te.write(d, append(te.read(d), randomBytes(seg+28)...))
			return blobURL(d), nil, content
		}},
		{name: "blob: segments reordered", tamper: func(te *tamperEnv) (string, map[string]string, []byte) {
			content := randomBytes(5*seg + 100)
			d := te.blob(content, false)
			b := te.read(d)
			s1 := bytes.Clone(b[header+slot : header+2*slot])
			copy(b[header+slot:], b[header+2*slot:header+3*slot])
			copy(b[header+2*slot:], s1)
			te.write(d, b)
			return blobURL(d), nil, content
		}},
		{name: "blob: segment spliced from another blob", tamper: func(te *tamperEnv) (string, map[string]string, []byte) {
			content := randomBytes(5*seg + 100)
			d, other := te.blob(content, false), te.blob(randomBytes(5*seg+100), false)
			b := te.read(d)
			copy(b[header+2*slot:header+3*slot], te.read(other)[header+2*slot:])
			te.write(d, b)
			return blobURL(d), nil, content
		}},
		{name: "blob: plaintext in place of the sealed file", tamper: func(te *tamperEnv) (string, map[string]string, []byte) {
			content := randomBytes(2 * seg)
			d := te.blob(content, false)
			te.write(d, content)
			return blobURL(d), nil, content
		}},
		{name: "blob: two files of the same size swapped, full GET", tamper: func(te *tamperEnv) (string, map[string]string, []byte) {
			d, want := swapped(te)
			return blobURL(d), nil, want
		}},
		{name: "blob: two files of the same size swapped, Range GET", tamper: func(te *tamperEnv) (string, map[string]string, []byte) {
			d, want := swapped(te)
			return blobURL(d), map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", 2*seg+5, 2*seg+500)}, want[2*seg+5 : 2*seg+501]
		}},
		{name: "blob: damage past the first megabyte, full GET", cut: true, tamper: func(te *tamperEnv) (string, map[string]string, []byte) {
			content := randomBytes(24*seg + 9)
			d := te.blob(content, true)
			b := te.read(d)
			b[header+20*slot+300] ^= 1
			te.write(d, b)
			return blobURL(d), nil, content
		}},
		{name: "blob: damage past the first megabyte, Range GET at it", tamper: func(te *tamperEnv) (string, map[string]string, []byte) {
			content := randomBytes(24*seg + 9)
			d := te.blob(content, true)
			b := te.read(d)
			b[header+20*slot+300] ^= 1
			te.write(d, b)
			return blobURL(d), map[string]string{"Range": fmt.Sprintf("bytes=%d-", 20*seg)}, content[20*seg:]
		}},
		{name: "manifest: bit flip, pull by tag", tamper: func(te *tamperEnv) (string, map[string]string, []byte) {
			d, m := te.image("flipped", []byte(`{"build":"flipped"}`))
			b := te.read(d)
			b[header+10] ^= 1
			te.write(d, b)
			return manifestURL("flipped"), accept, m
		}},
		{name: "manifest: another manifest's file copied over it, pull by tag", tamper: func(te *tamperEnv) (string, map[string]string, []byte) {
			_, m := sameSizeImages(te, 1)
			return manifestURL("prod1"), accept, m
		}},
		{name: "manifest: another manifest's file copied over it, pull by digest", tamper: func(te *tamperEnv) (string, map[string]string, []byte) {
			d, m := sameSizeImages(te, 2)
			return manifestURL(d.String()), accept, m
		}},
	}
	detected := 0
	var missed []string
	for _, c := range cases {
		path, hdr, want := c.tamper(te)
		resp, body, err := te.do("GET", path, nil, hdr)
		var why string
		switch {
		case err != nil && resp == nil:
			t.Fatalf("%s: %v", c.name, err)
		case resp.StatusCode >= 400:
			why = fmt.Sprintf("answered %d", resp.StatusCode)
		case c.cut && (err != nil || int64(len(body)) < resp.ContentLength) && !bytes.Equal(body, want):
			why = fmt.Sprintf("%d cut after %d of %d bytes", resp.StatusCode, len(body), resp.ContentLength)
		}
		if why == "" {
			same := "the right bytes"
			if !bytes.Equal(body, want) {
				same = "other bytes"
			}
			missed = append(missed, fmt.Sprintf("%s: answered %d with %d bytes (%s, read error %v)", c.name, resp.StatusCode, len(body), same, err))
			continue
		}
		detected++
		t.Logf("detected: %s (%s)", c.name, why)
	}
	t.Logf("%d of %d tamper cases detected", detected, len(cases))
	if len(cases) != 15 {
		t.Errorf("the suite has %d cases, want 15", len(cases))
	}
	for _, m := range missed {
		t.Errorf("not detected: %s", m)
	}
	// The untouched content still reads.
	good := randomBytes(3*seg + 1)
	d := te.blob(good, true)
	if resp, body, err := te.do("GET", blobURL(d), nil, nil); err != nil || resp.StatusCode != 200 || !bytes.Equal(body, good) {
		t.Fatalf("an untouched blob: %v %v", resp.StatusCode, err)
	}
}
