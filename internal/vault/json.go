package vault

import (
	"crypto/rand"
	"encoding/json"

	"github.com/cofferhq/coffer/internal/access"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func jsonMarshal(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func randRead(b []byte) { rand.Read(b) }

func keyScope(vault, name string) access.Scope { return access.KeyScope(vault, name) }
