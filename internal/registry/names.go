package registry

import (
	_ "crypto/sha512" // registers sha512 for go-digest
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
)

var (
	nameComponent = `[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*`
	nameRE        = regexp.MustCompile(`^` + nameComponent + `(?:/` + nameComponent + `)*$`)
	tagRE         = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// MaxNameLength bounds repository names.
const MaxNameLength = 255

// ValidName reports whether name is a valid repository name.
func ValidName(name string) bool {
	return len(name) <= MaxNameLength && nameRE.MatchString(name)
}

// ValidTag reports whether tag is a valid tag.
func ValidTag(tag string) bool { return tagRE.MatchString(tag) }

// ParseDigest parses a digest of a supported algorithm (sha256, sha512).
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", newError(CodeDigestInvalid, "invalid digest %q: %v", s, err)
	}
	switch d.Algorithm() {
	case digest.SHA256, digest.SHA512:
		return d, nil
	}
	return "", newError(CodeDigestInvalid, "unsupported digest algorithm %q: use sha256 or sha512", d.Algorithm())
}

// IsDigestRef reports whether a manifest reference is a digest rather than a tag.
func IsDigestRef(ref string) bool { return strings.Contains(ref, ":") }

// blobPath is where a blob's (or a manifest's) bytes live in the blob store.
func blobPath(d digest.Digest) string {
	hex := d.Encoded()
	return "blobs/" + string(d.Algorithm()) + "/" + hex[:2] + "/" + hex
}

// uploadPath is where an upload in progress lives in the blob store.
func uploadPath(id string) string { return "uploads/" + id }
