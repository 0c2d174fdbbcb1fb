// Package wire holds the wire types of Coffer's management API (/coffer/v1/...): the
// request and response bodies of every management route, with their JSON shape. The
// handlers produce and consume them, and the CLI (and any console or script written in Go)
// decodes them; the OpenAPI document served at /coffer/v1/openapi.json is generated from
// them and from the route table in package mgmt.
//
// The package holds plain types and the grammars of their strings (scope.go: scopes and
// scope maps, which the access part applies on the server and the CLI checks before
// sending): it imports no service package. Conversions from a part's domain types live in
// that part's handler package, next to the handlers.
package wire

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// AudienceManagement is the audience (the "service" of the token request) of the
// management tokens that every management route takes as a bearer token.
const AudienceManagement = "coffer-management"

// List is the envelope of most list answers: {"value":[...]}.
type List[T any] struct {
	Value []T `json:"value"`
}

// Error is the body of every failed management request: {"error":{"code","message"}}.
type Error struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the code (BadParameter, Unauthorized, Forbidden, NotFound, Conflict,
// TooManyRequests, InternalError) and a message for a person.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errBadBytes is wrapped by the errors of Bytes, as the vault wraps its own ("invalid
// parameter: ...").
var errBadBytes = errors.New("invalid parameter")

// Bytes is a byte string that marshals as unpadded base64url (as Key Vault writes binary
// members) and accepts padded or unpadded, URL or standard base64 when unmarshalled.
type Bytes []byte

// MarshalJSON implements json.Marshaler.
func (b Bytes) MarshalJSON() ([]byte, error) {
	return []byte(`"` + base64.RawURLEncoding.EncodeToString(b) + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*b = nil
		return nil
	}
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return fmt.Errorf("%w: expected a base64url string", errBadBytes)
	}
	v, err := DecodeBytes(string(data[1 : len(data)-1]))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// DecodeBytes decodes base64url or base64, padded or not.
func DecodeBytes(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "+/") {
		v, err := base64.RawStdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: bad base64: %v", errBadBytes, err)
		}
		return v, nil
	}
	v, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: bad base64url: %v", errBadBytes, err)
	}
	return v, nil
}

// MapSlice converts each element of in with f, keeping a nil slice nil (so it encodes as
// null, as the domain slice did): the handlers' domain → wire conversions and the CLI's
// wire → view conversions use it.
func MapSlice[T, U any](in []T, f func(T) U) []U {
	if in == nil {
		return nil
	}
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}
