package vault

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Addresses say where this server's vaults answer. A vault answers at NAME.<Domain> on
// the main port, and, when it has a port of its own, at HOST:PORT whatever the host name.
// Addresses is configuration only (no lookups, no HTTP): the Service adds the vaults that
// exist (LocalVault).
type Addresses struct {
	// Scheme is "https" (the default when empty) or "http" (--plain-http).
	Scheme string
	// Domain is the vault domain: vault NAME answers at NAME.<Domain>.
	Domain string
	// ListenHost is the host of the main listen address; "", "0.0.0.0" and "::" mean every
	// address (URLs then name the first of Hostnames, else localhost).
	ListenHost string
	// Port is the main listener's port; 0 when not known (URLs then carry no port, and
	// LocalVault accepts NAME.<Domain> on any port).
	Port int
	// Hostnames are the server's other names (--hostname).
	Hostnames []string
}

func (a Addresses) scheme() string {
	if a.Scheme == "" {
		return "https"
	}
	return a.Scheme
}

// listenHost is ListenHost, or "" for a wildcard listen address.
func (a Addresses) listenHost() string {
	if a.ListenHost == "0.0.0.0" || a.ListenHost == "::" {
		return ""
	}
	return a.ListenHost
}

// publicHost is the host clients reach the server at: the listen host, or for a wildcard
// listen address the first host name (else localhost).
func (a Addresses) publicHost() string {
	if h := a.listenHost(); h != "" {
		return h
	}
	if len(a.Hostnames) > 0 {
		return a.Hostnames[0]
	}
	return "localhost"
}

// ListenAddr is the address a vault's own port listens on: the main listen host (every
// address for a wildcard one) and port.
func (a Addresses) ListenAddr(port int) string {
	return net.JoinHostPort(a.listenHost(), strconv.Itoa(port))
}

// VaultURL is the URL vault v is reached at: SCHEME://NAME.<domain>[:port] by default, or
// SCHEME://HOST:PORT when the vault has a port of its own.
func (a Addresses) VaultURL(v Vault) string {
	if v.Port != 0 {
		return a.scheme() + "://" + net.JoinHostPort(a.publicHost(), strconv.Itoa(v.Port))
	}
	u := a.scheme() + "://" + v.Name + "." + a.Domain
	if a.Port != 0 && a.Port != 443 {
		u += ":" + strconv.Itoa(a.Port)
	}
	return u
}

// AuthorityURL is the server's main URL as clients reach it (the Key Vault challenge names
// AuthorityURL/TENANT).
func (a Addresses) AuthorityURL() string {
	return a.scheme() + "://" + net.JoinHostPort(a.publicHost(), strconv.Itoa(a.Port))
}

// VaultHost returns the vault a host name (no port) addresses by the vault domain:
// "team1" for team1.<domain>. ok is false for any other name.
func (a Addresses) VaultHost(host string) (name string, ok bool) {
	if a.Domain == "" {
		return "", false
	}
	name, ok = strings.CutSuffix(strings.ToLower(host), "."+strings.ToLower(a.Domain))
	if !ok || name == "" || strings.Contains(name, ".") {
		return "", false
	}
	return name, true
}

// IsLocalHost tells whether host (no port) names this server: localhost, a loopback
// address, the listen host or one of the host names.
func (a Addresses) IsLocalHost(host string) bool {
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return true
	}
	if lh := a.listenHost(); lh != "" && strings.EqualFold(lh, host) {
		return true
	}
	for _, h := range a.Hostnames {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// LocalVault tells whether a vault URL (scheme://host[:port], as in key ids) addresses one
// of this server's vaults, and which: NAME.<vault domain> on the main port (or with no
// port), or a local host name on a vault's own port. err is set only when the vaults could
// not be read.
func (s *Service) LocalVault(ctx context.Context, vaultURL string) (name string, ok bool, err error) {
	u, err := url.Parse(vaultURL)
	if err != nil {
		return "", false, nil
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if name, ok := s.addrs.VaultHost(host); ok {
		if port != "" && s.addrs.Port != 0 && port != strconv.Itoa(s.addrs.Port) {
			return "", false, nil // the same domain on another server
		}
		if _, err := s.vault(ctx, name); err != nil {
			if errors.Is(err, ErrNotFound) {
				return "", false, nil
			}
			return "", false, err
		}
		return name, true, nil
	}
	if port == "" || !s.addrs.IsLocalHost(host) {
		return "", false, nil
	}
	p, err := strconv.Atoi(port)
	if err != nil || p == 0 {
		return "", false, nil
	}
	v, ok, err := s.VaultOnPort(ctx, p)
	return v.Name, ok, err
}

// VaultOnPort returns the vault that has port p as a port of its own.
func (s *Service) VaultOnPort(ctx context.Context, p int) (Vault, bool, error) {
	all, err := s.AllVaults(ctx)
	if err != nil {
		return Vault{}, false, err
	}
	for _, v := range all {
		if v.Port == p {
			return v, true, nil
		}
	}
	return Vault{}, false, nil
}
