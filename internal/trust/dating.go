package trust

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/theupdateframework/notary/tuf/data"
	"github.com/theupdateframework/notary/tuf/signed"
)

// Lifetimes of what the server signs (notary's defaults for server-signed roles).
const (
	TimestampLifetime = 24 * time.Hour
	SnapshotLifetime  = 7 * 24 * time.Hour
)

// signTimestamp signs, with the server-held timestamp key(s) the root names, a timestamp
// naming exactly the snapshot bytes snap, dated by the service's clock (notary's builder
// dates from the wall clock and names the snapshot it loaded, not the bytes stored).
func (s *Service) signTimestamp(ks keyService, root *data.SignedRoot, snap []byte, prev *data.SignedTimestamp) ([]byte, error) {
	meta, err := data.NewFileMeta(bytes.NewReader(snap), data.NotaryDefaultHashes...)
	if err != nil {
		return nil, err
	}
	ts := &data.SignedTimestamp{Signed: data.Timestamp{
		SignedCommon: data.SignedCommon{Type: data.TUFTypes[data.CanonicalTimestampRole], Version: 1, Expires: s.now().Add(TimestampLifetime).UTC().Round(time.Second)},
		Meta:         data.Files{data.CanonicalSnapshotRole.String(): meta},
	}}
	if prev != nil {
		ts.Signed.Version = prev.Signed.Version + 1
	}
	sgnd, err := ts.ToSigned()
	if err != nil {
		return nil, err
	}
	return signAs(ks, root, data.CanonicalTimestampRole, sgnd)
}

// signSnapshot signs, with the server-held snapshot key(s) the root names, the snapshot
// that follows prev (nil for the first): prev's entries, with those of the roles in
// changed (their exact bytes) replaced, dated by the service's clock. One vault signature
// per key. (notary's builder would date it from package-level defaults that other notary
// packages change at init.)
func (s *Service) signSnapshot(ks keyService, root *data.SignedRoot, prev *data.SignedSnapshot, changed map[data.RoleName][]byte) ([]byte, error) {
	sn := &data.SignedSnapshot{Signed: data.Snapshot{
		SignedCommon: data.SignedCommon{Type: data.TUFTypes[data.CanonicalSnapshotRole], Version: 1, Expires: s.now().Add(SnapshotLifetime).UTC().Round(time.Second)},
		Meta:         data.Files{},
	}}
	if prev != nil {
		sn.Signed.Version = prev.Signed.Version + 1
		for name, m := range prev.Signed.Meta {
			sn.Signed.Meta[name] = m
		}
	}
	for role, b := range changed {
		if role == data.CanonicalSnapshotRole || role == data.CanonicalTimestampRole {
			continue
		}
		m, err := data.NewFileMeta(bytes.NewReader(b), data.NotaryDefaultHashes...)
		if err != nil {
			return nil, err
		}
		sn.Signed.Meta[role.String()] = m
	}
	for _, need := range []data.RoleName{data.CanonicalRootRole, data.CanonicalTargetsRole} {
		if _, ok := sn.Signed.Meta[need.String()]; !ok {
			return nil, fmt.Errorf("the snapshot would not name the %s role", need)
		}
	}
	sgnd, err := sn.ToSigned()
	if err != nil {
		return nil, err
	}
	return signAs(ks, root, data.CanonicalSnapshotRole, sgnd)
}

// signAs signs sgnd with the keys root names for role, to its threshold.
func signAs(ks keyService, root *data.SignedRoot, role data.RoleName, sgnd *data.Signed) ([]byte, error) {
	base, err := root.BuildBaseRole(role)
	if err != nil {
		return nil, fmt.Errorf("the root names no %s role: %w", role, err)
	}
	sgnd.Signatures = nil
	if err := signed.Sign(ks, sgnd, base.ListKeys(), base.Threshold, nil); err != nil {
		return nil, err
	}
	return json.Marshal(sgnd)
}

func parseRoot(b []byte) (*data.SignedRoot, error) {
	var r data.SignedRoot
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("root metadata: %w", err)
	}
	return &r, nil
}
