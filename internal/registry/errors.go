package registry

import (
	"errors"
	"fmt"
)

// Code is an OCI distribution-spec error code.
type Code string

// The distribution spec's error codes.
const (
	CodeBlobUnknown         Code = "BLOB_UNKNOWN"
	CodeBlobUploadInvalid   Code = "BLOB_UPLOAD_INVALID"
	CodeBlobUploadUnknown   Code = "BLOB_UPLOAD_UNKNOWN"
	CodeDigestInvalid       Code = "DIGEST_INVALID"
	CodeManifestBlobUnknown Code = "MANIFEST_BLOB_UNKNOWN"
	CodeManifestInvalid     Code = "MANIFEST_INVALID"
	CodeManifestUnknown     Code = "MANIFEST_UNKNOWN"
	CodeNameInvalid         Code = "NAME_INVALID"
	CodeNameUnknown         Code = "NAME_UNKNOWN"
	CodeSizeInvalid         Code = "SIZE_INVALID"
	CodeUnauthorized        Code = "UNAUTHORIZED"
	CodeDenied              Code = "DENIED"
	CodeUnsupported         Code = "UNSUPPORTED"
	CodeTooManyRequests     Code = "TOOMANYREQUESTS"
)

// Error is a registry error a client can act on: a spec code, a message and optional detail.
type Error struct {
	Code    Code
	Message string
	Detail  any
	// cause lets callers test for the finer conditions below with errors.Is.
	cause error
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Unwrap returns the finer condition, if any.
func (e *Error) Unwrap() error { return e.cause }

// Finer conditions, under a spec code, that call for a particular answer.
var (
	// ErrRangeNotSatisfiable: a chunk does not start where the upload ends (BLOB_UPLOAD_INVALID).
	ErrRangeNotSatisfiable = errors.New("chunk out of order")
	// ErrTooLarge: the manifest exceeds the size limit (MANIFEST_INVALID).
	ErrTooLarge = errors.New("manifest too large")
	// ErrReferenced: a delete refused while manifests of the repository need the content
	// (DENIED; the HTTP API answers 409 Conflict).
	ErrReferenced = errors.New("content still referenced")
)

// TooLarge is the error for a manifest of size bytes over the limit max.
func TooLarge(size, max int64) *Error {
	return &Error{Code: CodeManifestInvalid, cause: ErrTooLarge,
		Message: fmt.Sprintf("manifest of %d bytes exceeds the limit of %d bytes", size, max)}
}

func newError(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the spec code of err, or "" if err is not a registry error.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
