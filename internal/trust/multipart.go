package trust

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"

	"github.com/theupdateframework/notary/tuf/data"
)

// Limits of one update.
const (
	MaxUpdateSize  = 32 << 20
	MaxUpdateParts = 64
)

// ParseUpdate reads a notary multipart update: one part per role, the role named by the
// part's filename. The Content-Disposition header is parsed here because Go's
// Part.FileName drops everything before the last slash, which would turn the delegated
// role "targets/releases" into "releases".
func ParseUpdate(body io.Reader, contentType string) ([]Part, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, newErr(http.StatusBadRequest, CodeMalformedUpload, "the update must be multipart/form-data with a boundary, not %q", clip(contentType))
	}
	mr := multipart.NewReader(io.LimitReader(body, MaxUpdateSize+1), params["boundary"])
	var parts []Part
	total := 0
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, newErr(http.StatusBadRequest, CodeMalformedUpload, "the multipart body is malformed: %v", err)
		}
		if len(parts) == MaxUpdateParts {
			return nil, newErr(http.StatusBadRequest, CodeMalformedUpload, "the update has more than %d parts", MaxUpdateParts)
		}
		role, err := partRole(p.Header.Get("Content-Disposition"))
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(p, MaxMetadataSize+1))
		if err != nil {
			return nil, newErr(http.StatusBadRequest, CodeMalformedUpload, "the multipart body is malformed: %v", err)
		}
		if len(b) > MaxMetadataSize {
			return nil, newErr(http.StatusBadRequest, CodeMalformedUpload, "the %s metadata is over %d bytes", role, MaxMetadataSize)
		}
		total += len(b)
		if total > MaxUpdateSize {
			return nil, newErr(http.StatusBadRequest, CodeMalformedUpload, "the update is over %d bytes", MaxUpdateSize)
		}
		parts = append(parts, Part{Role: role, Data: b})
	}
	if len(parts) == 0 {
		return nil, newErr(http.StatusBadRequest, CodeMalformedUpload, "the update holds no metadata")
	}
	return parts, nil
}

// partRole is the role a part's Content-Disposition filename names.
func partRole(cd string) (data.RoleName, error) {
	if cd == "" {
		return "", newErr(http.StatusBadRequest, CodeMalformedUpload, "a part has no Content-Disposition: name each part by its role (filename=\"targets\")")
	}
	_, params, err := mime.ParseMediaType(cd)
	if err != nil {
		return "", newErr(http.StatusBadRequest, CodeMalformedUpload, "a part's Content-Disposition is malformed: %v", err)
	}
	name := params["filename"]
	if name == "" {
		return "", newErr(http.StatusBadRequest, CodeMalformedUpload, "a part has no filename: name each part by its role (filename=\"targets\")")
	}
	role := data.RoleName(name)
	if err := CheckRole(role); err != nil {
		return "", &Error{Status: http.StatusBadRequest, Code: CodeInvalidRole, Message: fmt.Sprintf("part %q: %v", clip(name), err)}
	}
	return role, nil
}
