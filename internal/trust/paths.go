package trust

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/theupdateframework/notary/tuf/data"

	"github.com/cofferhq/coffer/internal/registry"
)

// SplitGUN splits a GUN as docker forms it, "<registry host[:port]>/<repository>", into
// its host and repository. The host is the first path component and must look like one
// (a dot, a port or "localhost", as docker's reference grammar decides); the repository
// follows the OCI distribution grammar.
func SplitGUN(gun string) (host, repo string, err error) {
	host, repo, ok := strings.Cut(gun, "/")
	if !ok || host == "" || repo == "" {
		return "", "", fmt.Errorf("%q is not a trusted collection name: want <registry host[:port]>/<repository>, e.g. registry.example:5000/team/app", clip(gun))
	}
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return "", "", fmt.Errorf("%q does not start with a registry host: want <registry host[:port]>/<repository>", clip(gun))
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == ':' || r == '[' || r == ']') {
			return "", "", fmt.Errorf("%q has an invalid registry host %q", clip(gun), clip(host))
		}
	}
	if !registry.ValidName(repo) {
		return "", "", fmt.Errorf("trusted collection %q: invalid repository name %q: components are lower-case letters and digits separated by '.', '_', '__' or '-', joined by '/'", clip(gun), clip(repo))
	}
	return host, repo, nil
}

// Request kinds of the trust API.
const (
	KindMeta         = "meta"         // GET <role>.json
	KindMetaChecksum = "meta-sha256"  // GET <role>.<sha256>.json
	KindMetaVersion  = "meta-version" // GET <N>.<role>.json
	KindKey          = "key"          // GET/POST <role>.key
	KindCollection   = "collection"   // POST/DELETE tuf/
	KindChangefeed   = "changefeed"   // GET changefeed
)

// Path is a parsed trust API path.
type Path struct {
	// GUN is empty only for the registry-wide changefeed.
	GUN      string
	Kind     string
	Role     data.RoleName
	Checksum string
	Version  int
}

// ParsePath parses the part of a trust URL after "/v2/": "<gun>/_trust/tuf/<file>",
// "<gun>/_trust/tuf/", "<gun>/_trust/changefeed" or "_trust/changefeed". ok is false when
// the path is not a trust path at all; err says why a trust path is malformed.
func ParsePath(p string) (Path, bool, error) {
	if p == "_trust/changefeed" {
		return Path{Kind: KindChangefeed}, true, nil
	}
	i := strings.Index(p, "/_trust/")
	if i < 0 {
		return Path{}, false, nil
	}
	gun, rest := p[:i], p[i+len("/_trust/"):]
	if gun == "" {
		return Path{}, true, fmt.Errorf("no trusted collection name in the path")
	}
	out := Path{GUN: gun}
	if rest == "changefeed" {
		out.Kind = KindChangefeed
		return out, true, nil
	}
	file, ok := strings.CutPrefix(rest, "tuf/")
	if !ok {
		return Path{}, true, fmt.Errorf("unknown trust resource %q", clip(rest))
	}
	if file == "" {
		out.Kind = KindCollection
		return out, true, nil
	}
	if role, ok := strings.CutSuffix(file, ".key"); ok {
		out.Kind, out.Role = KindKey, data.RoleName(role)
		if role != data.CanonicalTimestampRole.String() && role != data.CanonicalSnapshotRole.String() {
			return Path{}, true, fmt.Errorf("the server holds keys for timestamp and snapshot only, not %q", clip(role))
		}
		return out, true, nil
	}
	name, ok := strings.CutSuffix(file, ".json")
	if !ok {
		return Path{}, true, fmt.Errorf("unknown trust file %q: want <role>.json, <role>.<sha256>.json, <version>.<role>.json or <role>.key", clip(file))
	}
	out.Kind = KindMeta
	// <N>.<role>
	if dot := strings.IndexByte(name, '.'); dot > 0 {
		if v, err := strconv.Atoi(name[:dot]); err == nil && isDigits(name[:dot]) {
			if v < 1 {
				return Path{}, true, fmt.Errorf("version %d: versions start at 1", v)
			}
			out.Kind, out.Version, name = KindMetaVersion, v, name[dot+1:]
		}
	}
	// <role>.<sha256>
	if out.Kind == KindMeta {
		if dot := strings.LastIndexByte(name, '.'); dot >= 0 && len(name)-dot-1 == 64 && isHex(name[dot+1:]) {
			out.Kind, out.Checksum, name = KindMetaChecksum, name[dot+1:], name[:dot]
		}
	}
	out.Role = data.RoleName(name)
	if err := CheckRole(out.Role); err != nil {
		return Path{}, true, err
	}
	return out, true, nil
}

// CheckRole accepts the four base roles and delegations under targets/.
func CheckRole(r data.RoleName) error {
	if len(r) > 255 {
		return fmt.Errorf("role name is %d characters long, at most 255", len(r))
	}
	if !data.ValidRole(r) {
		return fmt.Errorf("%q is not a TUF role: want root, targets, snapshot, timestamp or targets/<delegation>", clip(string(r)))
	}
	return nil
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
