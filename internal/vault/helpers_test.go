package vault_test

import "github.com/cofferhq/coffer/internal/vault/keys"

func octJWK(k []byte) keys.JWK { return keys.JWK{Kty: "oct", K: k} }
