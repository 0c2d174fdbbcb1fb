// Package imagecrypt encrypts and decrypts container images on the client side, in
// ocicrypt's format, so that skopeo, buildah, podman, containerd imgcrypt and CRI-O read
// what Coffer writes and Coffer reads what they write (docs/image-encryption.md).
//
// The format is ocicrypt's own: github.com/containers/ocicrypt does the layer cipher
// (AES-256-CTR with an HMAC-SHA256 over the stream) and the key wrappers (JWE, PKCS#7, key
// providers); images move with oras-go. Only layers are encrypted; the config and the
// manifest stay readable.
//
// What Coffer adds:
//
//   - vault: recipients and keys. Encrypting to vault:KEY-URL encrypts, in the standard JWE
//     scheme, to the public half of an RSA key in a key vault, so any ocicrypt client with
//     the private key can decrypt; decrypting with vault:KEY-URL unwraps the JWE's encrypted
//     key with the vault's unwrapKey (RSA-OAEP or RSA-OAEP-256), through the one KEK
//     resolver (kek/resolve), so the private key never leaves the vault and every layer
//     decryption is one audited vault call by the caller's identity.
//   - Verify before release. ocicrypt checks its HMAC only at the end of a layer's stream;
//     Decrypt reads each layer whole into a private temporary file, checks the HMAC, the
//     digest ocicrypt recorded and the config's diff_id, and writes nothing to the
//     destination until every layer of every image passed.
//
// Layers are processed in parallel; a progress line is drawn when Options.Progress is set.
package imagecrypt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/containers/ocicrypt"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry"
)

// Docker schema 2 media types, converted to OCI before encryption (ocicrypt's media types
// exist only in OCI).
const (
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerConfig       = "application/vnd.docker.container.image.v1+json"
	dockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	encryptedSuffix    = "+encrypted"
)

// Options configure Encrypt, Decrypt and Inspect.
type Options struct {
	Registry RegistryOptions
	// KEKs reaches vault keys (vault: recipients and keys); nil: vault: is refused.
	KEKs KEKs
	// Identity is the identity vault calls are made as ("" for the resolver's default).
	Identity string
	// Layers selects layers by index (negative counts from the top: -1 is the last);
	// empty: every layer.
	Layers []int
	// Platforms filters an index (os/arch[/variant]); empty: every platform.
	Platforms []string
	// Parallel is how many layers are processed at once; 0: the number of CPUs.
	Parallel int
	// Progress receives a progress line (for a terminal); nil: none.
	Progress io.Writer
	// TempDir holds the staged layers (0600 files); "": the system's.
	TempDir string
}

// Layer is one layer of an image in a report.
type Layer struct {
	Index     int           `json:"index"`
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	DiffID    digest.Digest `json:"diffId,omitempty"`
	Encrypted bool          `json:"encrypted"`
	// Schemes are the key-wrapping schemes of an encrypted layer (jwe, pkcs7, provider.NAME…).
	Schemes []string `json:"schemes,omitempty"`
	// Recipients describe the wrapped keys where the format tells (JWE algorithm and key id,
	// a key provider's key).
	Recipients []string `json:"recipients,omitempty"`
	// Changed: this run encrypted or decrypted the layer.
	Changed bool `json:"changed,omitempty"`
}

// Image is one image (one platform of an index) in a report.
type Image struct {
	Platform string        `json:"platform,omitempty"`
	Manifest digest.Digest `json:"manifest"`
	Config   digest.Digest `json:"config"`
	Layers   []Layer       `json:"layers"`
}

// Result is what Encrypt, Decrypt and Inspect report.
type Result struct {
	Source      string        `json:"source"`
	Destination string        `json:"destination,omitempty"`
	MediaType   string        `json:"mediaType"`
	Digest      digest.Digest `json:"digest"`
	Images      []Image       `json:"images"`
	// Signatures (inspect of a registry reference only) are the signatures the registry
	// holds for the manifest, and a note on what encryption does not prove.
	Signatures *Signatures `json:"signatures,omitempty"`
}

// layerFunc turns one layer into its new form, staged in a temporary file.
type layerFunc func(ctx context.Context, src content.Fetcher, idx int, desc ocispec.Descriptor, diffID digest.Digest, file *os.File, p *progress) (ocispec.Descriptor, error)

// stagedImage is an image ready to be written.
type stagedImage struct {
	report   Image
	manifest []byte
	desc     ocispec.Descriptor
	config   []byte
	cdesc    ocispec.Descriptor
	layers   []stagedLayer
}

type stagedLayer struct {
	desc ocispec.Descriptor
	file string // "" : copied from the source as it is
}

// Encrypt encrypts the layers of src to the recipients and writes the image to dst.
func Encrypt(ctx context.Context, src, dst string, recipients []string, o Options) (*Result, error) {
	ec, _, err := encryptConfig(ctx, recipients, o.KEKs, o.Identity)
	if err != nil {
		return nil, err
	}
	fn := func(ctx context.Context, f content.Fetcher, idx int, desc ocispec.Descriptor, _ digest.Digest, file *os.File, p *progress) (ocispec.Descriptor, error) {
		return encryptLayer(ctx, f, ec, desc, file, p)
	}
	return o.transform(ctx, src, dst, "encrypt", fn)
}

// Decrypt decrypts the encrypted layers of src with the keys and writes the image to dst,
// after every layer was authenticated and matched its diff_id.
func Decrypt(ctx context.Context, src, dst string, keys []string, o Options) (*Result, error) {
	dk, err := parseKeys(keys)
	if err != nil {
		return nil, err
	}
	if len(dk.vault) > 0 && o.KEKs == nil {
		return nil, errors.New("no key vault is configured for vault: keys")
	}
	fn := func(ctx context.Context, f content.Fetcher, idx int, desc ocispec.Descriptor, diffID digest.Digest, file *os.File, p *progress) (ocispec.Descriptor, error) {
		return o.decryptLayer(ctx, f, dk, idx, desc, diffID, file, p)
	}
	return o.transform(ctx, src, dst, "decrypt", fn)
}

// Inspect reports, per layer, whether it is encrypted and to whom.
func Inspect(ctx context.Context, ref string, o Options) (*Result, error) {
	return o.transform(ctx, ref, "", "inspect", nil)
}

// transform reads src, runs fn on the selected layers, and (when dst is given and every
// layer succeeded) writes the result to dst.
func (o Options) transform(ctx context.Context, src, dst, mode string, fn layerFunc) (_ *Result, err error) {
	sref, err := ParseRef(src)
	if err != nil {
		return nil, err
	}
	var dref Ref
	if mode != "inspect" {
		if dref, err = ParseRef(dst); err != nil {
			return nil, err
		}
		if dref.Transport == DockerArchive {
			return nil, errors.New("docker-archive is a source only: write oci:DIR[:TAG] or docker://HOST/REPO:TAG")
		}
	}
	tmp, err := os.MkdirTemp(o.TempDir, "coffer-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var sk sink
	if mode != "inspect" {
		if sk, err = newSink(dref, tmp); err != nil {
			return nil, err
		}
		committed := false
		defer func() {
			if !committed {
				sk.discard()
			}
		}()
		defer func() { committed = err == nil }()
	}
	st, err := o.Registry.open(ctx, sref, false, tmp)
	if err != nil {
		return nil, err
	}
	root, err := st.Resolve(ctx, sref.Reference)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", sref, err)
	}
	raw, err := content.FetchAll(ctx, st, root)
	if err != nil {
		return nil, fmt.Errorf("read the manifest of %s: %w", sref, err)
	}
	root.MediaType = manifestMediaType(root.MediaType, raw)
	p := newProgress(o.Progress, mode)
	defer p.stop()

	res := &Result{Source: src}
	var images []*stagedImage
	var index []byte
	var indexDesc ocispec.Descriptor
	switch root.MediaType {
	case ocispec.MediaTypeImageIndex, dockerManifestList:
		var idx ocispec.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return nil, fmt.Errorf("%s: the index is not valid JSON: %w", sref, err)
		}
		var kept []ocispec.Descriptor
		for _, m := range idx.Manifests {
			if !o.platformWanted(m.Platform) {
				continue
			}
			if m.MediaType != ocispec.MediaTypeImageManifest && m.MediaType != dockerManifest {
				continue // an attestation or a nested index: not an image
			}
			mraw, err := content.FetchAll(ctx, st, m)
			if err != nil {
				return nil, fmt.Errorf("read manifest %s: %w", m.Digest, err)
			}
			img, err := o.stageImage(ctx, st, m, mraw, mode, fn, sk, p)
			if err != nil {
				return nil, err
			}
			img.report.Platform = platformString(m.Platform)
			img.desc.Platform = m.Platform
			img.desc.Annotations = m.Annotations
			images = append(images, img)
			kept = append(kept, img.desc)
		}
		if len(images) == 0 {
			return nil, fmt.Errorf("%s: no image in the index matches --platform %s", sref, strings.Join(o.Platforms, ","))
		}
		out := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: kept, Annotations: idx.Annotations}
		if index, err = json.Marshal(out); err != nil {
			return nil, err
		}
		indexDesc = content.NewDescriptorFromBytes(ocispec.MediaTypeImageIndex, index)
		res.MediaType, res.Digest = ocispec.MediaTypeImageIndex, indexDesc.Digest
	case ocispec.MediaTypeImageManifest, dockerManifest:
		img, err := o.stageImage(ctx, st, root, raw, mode, fn, sk, p)
		if err != nil {
			return nil, err
		}
		images = append(images, img)
		res.MediaType, res.Digest = img.desc.MediaType, img.desc.Digest
	default:
		return nil, fmt.Errorf("%s is a %s, not an image manifest or index", sref, root.MediaType)
	}
	for _, img := range images {
		res.Images = append(res.Images, img.report)
	}
	p.stop()
	if mode == "inspect" {
		res.MediaType, res.Digest = root.MediaType, root.Digest
		if sref.Transport == Registry {
			res.Signatures = findSignatures(ctx, st, root)
		}
		return res, nil
	}
	// Every layer passed: write the destination.
	res.Destination = dst
	dt, err := o.Registry.open(ctx, dref, true, tmp)
	if err != nil {
		return nil, err
	}
	var pending []stagedLayer
	for _, img := range images {
		for _, l := range img.layers {
			if l.file != "" {
				pending = append(pending, l)
			}
		}
	}
	if err := sk.commit(ctx, dt, pending); err != nil {
		return nil, fmt.Errorf("write %s: %w", dref, err)
	}
	for _, img := range images {
		if err := writeImage(ctx, st, dt, img); err != nil {
			return nil, fmt.Errorf("write %s: %w", dref, err)
		}
	}
	if err := sk.durable(images); err != nil {
		return nil, fmt.Errorf("write %s: %w", dref, err)
	}
	top, topBytes := images[0].desc, images[0].manifest
	if index != nil {
		top, topBytes = indexDesc, index
	}
	if err := pushTagged(ctx, dt, top, topBytes, dref.Reference); err != nil {
		return nil, fmt.Errorf("write %s: %w", dref, err)
	}
	if err := sk.finish(); err != nil {
		return nil, fmt.Errorf("write %s: %w", dref, err)
	}
	return res, nil
}

// manifestMediaType fills in a media type that the answer or the manifest left out
// (skopeo omits the manifest's mediaType).
func manifestMediaType(mt string, raw []byte) string {
	switch mt {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex, dockerManifest, dockerManifestList:
		return mt
	}
	var probe struct {
		MediaType string            `json:"mediaType"`
		Manifests []json.RawMessage `json:"manifests"`
		Config    json.RawMessage   `json:"config"`
	}
	if json.Unmarshal(raw, &probe) == nil {
		switch {
		case probe.MediaType != "":
			return probe.MediaType
		case probe.Manifests != nil:
			return ocispec.MediaTypeImageIndex
		case probe.Config != nil:
			return ocispec.MediaTypeImageManifest
		}
	}
	return mt
}

func (o Options) platformWanted(p *ocispec.Platform) bool {
	if len(o.Platforms) == 0 {
		return true
	}
	if p == nil {
		return false
	}
	for _, want := range o.Platforms {
		parts := strings.Split(want, "/")
		if len(parts) >= 2 && parts[0] == p.OS && parts[1] == p.Architecture && (len(parts) < 3 || parts[2] == p.Variant) {
			return true
		}
	}
	return false
}

func platformString(p *ocispec.Platform) string {
	if p == nil {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// ociLayerType converts a Docker layer media type to OCI's.
func ociLayerType(mt string) string {
	switch mt {
	case dockerLayer:
		return ocispec.MediaTypeImageLayerGzip
	case dockerForeignLayer:
		return ocispec.MediaTypeImageLayerNonDistributableGzip //nolint:staticcheck // what Docker's foreign layers are in OCI
	}
	return mt
}

// selected reports whether layer i of n is chosen by --layer.
func (o Options) selected(i, n int) bool {
	if len(o.Layers) == 0 {
		return true
	}
	return slices.ContainsFunc(o.Layers, func(l int) bool { return l == i || (l < 0 && n+l == i) })
}

// stageImage processes one image manifest: its selected layers go through fn into staged
// files; the new manifest is built but not written.
func (o Options) stageImage(ctx context.Context, st oras.ReadOnlyTarget, desc ocispec.Descriptor, raw []byte, mode string, fn layerFunc, sk sink, p *progress) (*stagedImage, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest %s is not valid JSON: %w", desc.Digest, err)
	}
	craw, err := content.FetchAll(ctx, st, m.Config)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", m.Config.Digest, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(craw, &cfg); err != nil {
		return nil, fmt.Errorf("config %s is not an image config: %w", m.Config.Digest, err)
	}
	img := &stagedImage{report: Image{Manifest: desc.Digest, Config: m.Config.Digest}, config: craw, cdesc: m.Config}
	if mode != "inspect" && desc.MediaType == dockerManifest {
		// ocicrypt's media types exist only in OCI: convert (the config JSON is the same).
		img.cdesc.MediaType = ocispec.MediaTypeImageConfig
	}
	n := len(m.Layers)
	img.layers = make([]stagedLayer, n)
	img.report.Layers = make([]Layer, n)
	g, gctx := errgroup.WithContext(ctx)
	par := o.Parallel
	if par <= 0 {
		par = runtime.NumCPU()
	}
	g.SetLimit(par)
	for i, l := range m.Layers {
		var diffID digest.Digest
		if i < len(cfg.RootFS.DiffIDs) {
			diffID = cfg.RootFS.DiffIDs[i]
		}
		img.report.Layers[i] = describeLayer(i, l, diffID)
		img.layers[i] = stagedLayer{desc: l}
		if mode != "inspect" {
			img.layers[i].desc.MediaType = ociLayerType(l.MediaType)
		}
		enc := strings.HasSuffix(l.MediaType, encryptedSuffix)
		switch {
		case mode == "inspect" || !o.selected(i, n):
			continue
		case mode == "encrypt" && enc:
			g.Wait()
			return nil, fmt.Errorf("layer %d (%s) is already encrypted: decrypt the image first to encrypt it to other recipients", i, l.Digest)
		case mode == "decrypt" && !enc:
			continue
		}
		if mode == "decrypt" && len(cfg.RootFS.DiffIDs) != n {
			g.Wait()
			return nil, fmt.Errorf("config %s lists %d diff_ids for %d layers: the image cannot be verified", m.Config.Digest, len(cfg.RootFS.DiffIDs), n)
		}
		f, err := sk.create()
		if err != nil {
			g.Wait()
			return nil, err
		}
		p.add(l.Size)
		src := img.layers[i].desc
		g.Go(func() error {
			defer f.Close()
			nd, err := fn(gctx, st, i, src, diffID, f, p)
			if err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			img.layers[i] = stagedLayer{desc: nd, file: f.Name()}
			img.report.Layers[i] = describeLayer(i, nd, diffID)
			img.report.Layers[i].Changed = true
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if mode == "inspect" {
		return img, nil
	}
	out := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: m.ArtifactType, Config: img.cdesc, Subject: m.Subject, Annotations: m.Annotations}
	for _, l := range img.layers {
		out.Layers = append(out.Layers, l.desc)
	}
	if img.manifest, err = json.Marshal(out); err != nil {
		return nil, err
	}
	img.desc = content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, img.manifest)
	return img, nil
}

// describeLayer reports a layer's encryption from its annotations.
func describeLayer(i int, d ocispec.Descriptor, diffID digest.Digest) Layer {
	l := Layer{Index: i, MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, DiffID: diffID, Encrypted: strings.HasSuffix(d.MediaType, encryptedSuffix)}
	for k, v := range d.Annotations {
		scheme, ok := strings.CutPrefix(k, annotationKeysPrefix)
		if !ok {
			continue
		}
		l.Schemes = append(l.Schemes, scheme)
		l.Recipients = append(l.Recipients, recipientsOf(scheme, v)...)
	}
	slices.Sort(l.Schemes)
	slices.Sort(l.Recipients)
	return l
}

// writeImage writes one staged image's blobs and manifest (by digest) to dst.
func writeImage(ctx context.Context, src oras.ReadOnlyTarget, dst oras.Target, img *stagedImage) error {
	for _, l := range img.layers {
		if l.file != "" {
			continue // committed by the sink
		}
		if ok, err := dst.Exists(ctx, l.desc); err == nil && ok {
			continue
		}
		orig := l.desc
		r, err := src.Fetch(ctx, orig)
		if err == nil {
			r = readCloser{content.NewVerifyReader(r, orig), r}
		}
		if err != nil {
			return err
		}
		err = dst.Push(ctx, l.desc, r)
		r.Close()
		if err != nil && !isExists(err) {
			return fmt.Errorf("layer %s: %w", l.desc.Digest, err)
		}
	}
	if ok, err := dst.Exists(ctx, img.cdesc); err != nil || !ok {
		if err := dst.Push(ctx, img.cdesc, bytes.NewReader(img.config)); err != nil && !isExists(err) {
			return fmt.Errorf("config: %w", err)
		}
	}
	if err := dst.Push(ctx, img.desc, bytes.NewReader(img.manifest)); err != nil && !isExists(err) {
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

func isExists(err error) bool {
	return err != nil && strings.Contains(err.Error(), "already exists")
}

// pushTagged writes the top manifest or index under tag.
func pushTagged(ctx context.Context, dst oras.Target, desc ocispec.Descriptor, b []byte, tag string) error {
	if rp, ok := dst.(registry.ReferencePusher); ok {
		return rp.PushReference(ctx, desc, bytes.NewReader(b), tag)
	}
	if ok, err := dst.Exists(ctx, desc); err != nil || !ok {
		if err := dst.Push(ctx, desc, bytes.NewReader(b)); err != nil && !isExists(err) {
			return err
		}
	}
	return dst.Tag(ctx, desc, tag)
}

// ocicryptFilter drops ocicrypt's annotations from a decrypted layer's descriptor.
func ocicryptFilter(a map[string]string) map[string]string {
	out := ocicrypt.FilterOutAnnotations(a)
	if len(out) == 0 {
		return nil
	}
	return out
}

// progress draws one line: bytes done of bytes selected.
type progress struct {
	w    io.Writer
	mode string
	mu   sync.Mutex
	done int64
	all  int64
	last int64
	end  bool
}

func newProgress(w io.Writer, mode string) *progress { return &progress{w: w, mode: mode} }

func (p *progress) add(n int64) {
	p.mu.Lock()
	p.all += n
	p.mu.Unlock()
}

// Write counts bytes (the encrypted side of a layer).
func (p *progress) Write(b []byte) (int, error) {
	if p.w == nil {
		return len(b), nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += int64(len(b))
	if p.done-p.last >= 1<<20 || p.done >= p.all {
		p.last = p.done
		p.draw()
	}
	return len(b), nil
}

func (p *progress) draw() {
	pct := 100.0
	if p.all > 0 {
		pct = float64(p.done) * 100 / float64(p.all)
	}
	fmt.Fprintf(p.w, "\r%s: %6.1f / %6.1f MiB %5.1f%%", p.mode, float64(p.done)/(1<<20), float64(p.all)/(1<<20), min(pct, 100))
}

func (p *progress) stop() {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.end && p.all > 0 {
		fmt.Fprintln(p.w)
	}
	p.end = true
}
