package api

import (
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/registry"
)

// acceptable reports whether a manifest of mediaType may answer r, as Distribution
// decides: a request with no Accept, with a wildcard (*/* or application/*) or one that
// lists the type gets the manifest; a Docker schema 2 image manifest is served whatever
// the Accept (every client reads it, and Distribution serves it so too); otherwise the
// answer is 404 MANIFEST_UNKNOWN, since no representation the client accepts exists.
// Parameters are ignored except q=0, which excludes its type.
func acceptable(r *http.Request, mediaType string) error {
	var listed []string
	for _, hv := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(hv, ",") {
			mt, params, err := mime.ParseMediaType(part)
			if err != nil {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
					continue
				}
			}
			if mt == mediaType || mt == "*/*" || mt == "application/*" {
				return nil
			}
			listed = append(listed, mt)
		}
	}
	if len(listed) == 0 || mediaType == registry.MediaTypeDockerManifest {
		return nil
	}
	return &registry.Error{Code: registry.CodeManifestUnknown,
		Message: fmt.Sprintf("the manifest is a %s, which the request's Accept (%s) does not list: add it to Accept to get it", mediaType, strings.Join(listed, ", ")),
		Detail:  map[string]any{"mediaType": mediaType, "accept": listed}}
}
