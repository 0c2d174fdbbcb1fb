package keyprovider

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/cofferhq/coffer/internal/kek/resolve"
)

// Config is the provider's identity file: how it reaches the vault. With a client secret it
// authenticates as that service principal; without, as the host's managed identity
// (IDENTITY_ENDPOINT / IDENTITY_HEADER, read by the Azure SDK).
type Config struct {
	TenantID         string `json:"tenantId"`
	ClientID         string `json:"clientId"`
	ClientSecret     string `json:"clientSecret,omitempty"`
	ClientSecretFile string `json:"clientSecretFile,omitempty"`
	// AuthorityHost is the token service (a Coffer server's URL); empty: Microsoft Entra ID.
	AuthorityHost string `json:"authorityHost,omitempty"`
	// CAFile holds extra CA certificates trusted for the vault and the token service.
	CAFile string `json:"caFile,omitempty"`
}

// LoadConfig reads the identity file. A file holding a client secret must not be readable
// by group or others.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("key provider config: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("key provider config %s: %w", path, err)
	}
	if c.ClientSecret != "" {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return c, fmt.Errorf("key provider config %s holds a client secret and is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
		}
	}
	if c.ClientSecretFile != "" {
		fi, err := os.Stat(c.ClientSecretFile)
		if err != nil {
			return c, fmt.Errorf("key provider config: clientSecretFile: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return c, fmt.Errorf("client secret file %s is readable by others (mode %v): chmod 600 it", c.ClientSecretFile, fi.Mode().Perm())
		}
		s, err := os.ReadFile(c.ClientSecretFile)
		if err != nil {
			return c, err
		}
		c.ClientSecret = strings.TrimSpace(string(s))
	}
	return c, nil
}

// Resolver is the KEK resolver for this identity (REST only: a node holds no vault).
func (c Config) Resolver() *resolve.Resolver {
	return resolve.NewRemote(resolve.Credential{TenantID: c.TenantID, ClientID: c.ClientID, ClientSecret: c.ClientSecret, AuthorityHost: c.AuthorityHost}, c.CAFile)
}

// Identity is the identity the resolver is asked for: the client id with a managed
// identity, [system] (the client secret) otherwise.
func (c Config) Identity() string {
	if c.ClientSecret == "" {
		return c.ClientID
	}
	return ""
}

// OcicryptConfig is the OCICRYPT_KEYPROVIDER_CONFIG document naming this provider, as a
// command (path and args) or as a gRPC address (unix:///path).
func OcicryptConfig(command []string, grpcAddr string) ([]byte, error) {
	attrs := map[string]any{}
	switch {
	case grpcAddr != "" && len(command) > 0:
		return nil, fmt.Errorf("give a command or a gRPC address, not both")
	case grpcAddr != "":
		attrs["grpc"] = grpcAddr
	case len(command) > 0:
		attrs["cmd"] = map[string]any{"path": command[0], "args": command[1:]}
	default:
		return nil, fmt.Errorf("give a command or a gRPC address")
	}
	return json.MarshalIndent(map[string]any{"key-providers": map[string]any{Name: attrs}}, "", "  ")
}
