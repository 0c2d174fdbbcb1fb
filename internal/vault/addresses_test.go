package vault_test

import (
	"testing"

	"github.com/cofferhq/coffer/internal/vault"
)

func TestAddressesURLs(t *testing.T) {
	tests := []struct {
		name      string
		a         vault.Addresses
		v         vault.Vault
		vault     string
		authority string
	}{
		{"by host name on the main port", vault.Addresses{Domain: "vault.localhost", ListenHost: "127.0.0.1", Port: 5000},
			vault.Vault{Name: "team1"}, "https://team1.vault.localhost:5000", "https://127.0.0.1:5000"},
		{"port 443 is left out", vault.Addresses{Domain: "vault.example.com", ListenHost: "0.0.0.0", Port: 443, Hostnames: []string{"coffer.example.com"}},
			vault.Vault{Name: "team1"}, "https://team1.vault.example.com", "https://coffer.example.com:443"},
		{"own port, wildcard listen, no host name", vault.Addresses{Domain: "vault.localhost", ListenHost: "::", Port: 5000},
			vault.Vault{Name: "team1", Port: 7001}, "https://localhost:7001", "https://localhost:5000"},
		{"own port, wildcard listen, host name", vault.Addresses{Domain: "vault.localhost", Port: 5000, Hostnames: []string{"kv.example.com"}},
			vault.Vault{Name: "team1", Port: 7001}, "https://kv.example.com:7001", "https://kv.example.com:5000"},
		{"plain HTTP, own port on the listen host", vault.Addresses{Scheme: "http", Domain: "vault.localhost", ListenHost: "127.0.0.1", Port: 5000},
			vault.Vault{Name: "team1", Port: 7001}, "http://127.0.0.1:7001", "http://127.0.0.1:5000"},
		{"main port not known", vault.Addresses{Domain: "vault.localhost"},
			vault.Vault{Name: "team1"}, "https://team1.vault.localhost", "https://localhost:0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.VaultURL(tc.v); got != tc.vault {
				t.Errorf("VaultURL = %s, want %s", got, tc.vault)
			}
			if got := tc.a.AuthorityURL(); got != tc.authority {
				t.Errorf("AuthorityURL = %s, want %s", got, tc.authority)
			}
		})
	}
}

func TestAddressesVaultHost(t *testing.T) {
	a := vault.Addresses{Domain: "Vault.Localhost"}
	for host, want := range map[string]string{
		"team1.vault.localhost": "team1", "TEAM1.VAULT.LOCALHOST": "team1",
		"vault.localhost": "", ".vault.localhost": "", "a.b.vault.localhost": "", "team1.vault.example": "", "localhost": "",
	} {
		got, ok := a.VaultHost(host)
		if got != want || ok != (want != "") {
			t.Errorf("VaultHost(%q) = %q, %v; want %q", host, got, ok, want)
		}
	}
	if _, ok := (vault.Addresses{}).VaultHost("team1."); ok {
		t.Error("no vault domain: a host name still addressed a vault")
	}
}

// TestLocalVault: which vault URLs are this server's vaults (the KEK resolver reaches
// those in-process).
func TestLocalVault(t *testing.T) {
	tests := []struct {
		name  string
		addrs vault.Addresses
		url   string
		want  string // "" for not local
	}{
		{"domain host, main port", vault.Addresses{Domain: "vault.localhost", ListenHost: "127.0.0.1", Port: 5000}, "https://team1.vault.localhost:5000", "team1"},
		{"domain host, no port", vault.Addresses{Domain: "vault.localhost", ListenHost: "127.0.0.1", Port: 5000}, "https://team1.vault.localhost", "team1"},
		{"domain host, main port not known", vault.Addresses{Domain: "vault.localhost"}, "https://team1.vault.localhost:6000", "team1"},
		{"domain host, another server's port", vault.Addresses{Domain: "vault.localhost", ListenHost: "127.0.0.1", Port: 5000}, "https://team1.vault.localhost:6000", ""},
		{"domain host, no such vault", vault.Addresses{Domain: "vault.localhost", Port: 5000}, "https://nosuch.vault.localhost:5000", ""},
		{"own port on localhost", vault.Addresses{Domain: "vault.localhost", ListenHost: "127.0.0.1", Port: 5000}, "https://localhost:7001", "ported"},
		{"own port on a loopback address", vault.Addresses{Domain: "vault.localhost", ListenHost: "127.0.0.1", Port: 5000}, "https://127.0.0.1:7001", "ported"},
		{"own port on the listen host", vault.Addresses{Domain: "vault.localhost", ListenHost: "10.1.2.3", Port: 5000}, "https://10.1.2.3:7001", "ported"},
		{"own port on a --hostname, wildcard listen", vault.Addresses{Domain: "vault.localhost", ListenHost: "0.0.0.0", Port: 5000, Hostnames: []string{"KV.example.com"}}, "https://kv.example.com:7001", "ported"},
		{"wildcard listen is no host name", vault.Addresses{Domain: "vault.localhost", ListenHost: "0.0.0.0", Port: 5000}, "https://0.0.0.0:7001", ""},
		{"a port no vault has", vault.Addresses{Domain: "vault.localhost", ListenHost: "127.0.0.1", Port: 5000}, "https://localhost:7002", ""},
		{"local host without a port", vault.Addresses{Domain: "vault.localhost", ListenHost: "127.0.0.1", Port: 5000}, "https://localhost", ""},
		{"unknown host on a vault's port", vault.Addresses{Domain: "vault.localhost", ListenHost: "127.0.0.1", Port: 5000}, "https://kv.example.com:7001", ""},
		{"Azure Key Vault", vault.Addresses{Domain: "vault.localhost", Port: 5000}, "https://team1.vault.azure.net", ""},
		{"not a URL", vault.Addresses{Domain: "vault.localhost", Port: 5000}, "://", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := setupWith(t, func(o *vault.Options) { o.Addresses = tc.addrs })
			ctx := inProcess()
			for _, v := range []vault.Vault{{Name: "team1"}, {Name: "ported", Port: 7001}} {
				if _, err := f.svc.CreateVault(ctx, f.admin, v); err != nil {
					t.Fatal(err)
				}
			}
			name, ok, err := f.svc.LocalVault(ctx, tc.url)
			if err != nil || name != tc.want || ok != (tc.want != "") {
				t.Fatalf("LocalVault(%s) = %q, %v, %v; want %q", tc.url, name, ok, err, tc.want)
			}
		})
	}
}
