// Package resolve turns "key URL + identity" into a working kek.KEK: the in-process driver
// (kek/inproc) when the key is in one of this process's own vaults, acting as the identity's
// principal; the REST driver (kek/rest) for any other vault (another Coffer server, Azure Key
// Vault), authenticating as the identity with a client secret or the managed-identity
// endpoint. Encryption at rest, the KMS plugin and the image-encryption key provider share
// it, so the choice of driver and of credential is made in one place (docs/kek.md).
//
// The resolver depends on narrow interfaces only: which vault URLs are local, how an
// identity reference becomes a principal, and the vault service for in-process calls. It
// reads no environment variable: the client-secret credential comes in Options.Credential
// (filled by package config).
package resolve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/kek/inproc"
	"github.com/cofferhq/coffer/internal/kek/rest"
	"github.com/cofferhq/coffer/internal/vault"
)

// SystemIdentity names the process's own identity (the registry's system identity; the
// same value as keyring.SystemIdentity). An empty identity means the same.
const SystemIdentity = "[system]"

// LocalVaults tells whether a vault URL (scheme://host[:port], as in key ids) addresses one
// of this process's vaults, and which.
type LocalVaults interface {
	LocalVault(ctx context.Context, vaultURL string) (name string, ok bool, err error)
}

// Identities turns an identity reference into the principal the process acts as in its own
// vaults.
type Identities interface {
	SystemIdentity() identity.Principal
	Resolve(ctx context.Context, ref string) (identity.Principal, error)
}

// Credential is a client-secret credential in the Azure SDK's conventions (config.Azure).
type Credential struct {
	TenantID     string
	ClientID     string
	ClientSecret string
	// AuthorityHost is the token service's URL; empty: the Azure SDK's default.
	AuthorityHost string
}

// Options configure a Resolver.
type Options struct {
	// Vault is this process's vault service, called in-process for local vaults.
	Vault *vault.Service
	// Local tells which vault URLs are this process's vaults.
	Local LocalVaults
	// Identities resolves the identity of an in-process call.
	Identities Identities
	// Credential is used for remote vaults when it names the identity (see KEK).
	Credential Credential
	// CAFile holds extra CA certificates (PEM) trusted, beside the system roots, by remote
	// vaults and their token services (--encryption-vault-ca-file). It is read when a
	// remote driver is made.
	CAFile string
}

// Resolver gives the KEK driver that reaches a key as an identity. It implements
// keyring.Resolver (and any interface of that one method). REST drivers are kept per identity and vault, so their tokens and
// connections are reused; in-process drivers are cheap and made per call.
type Resolver struct {
	o Options

	mu   sync.Mutex
	rest map[string]kek.KEK // by identity + vault URL
	// newREST makes a REST driver; tests replace it to see the credential chosen.
	newREST func(c credentialChoice, vaultURL string, hc *http.Client) (kek.KEK, error)
}

// New returns a resolver. Vault, Local and Identities are required.
func New(o Options) (*Resolver, error) {
	if o.Vault == nil || o.Local == nil || o.Identities == nil {
		return nil, errors.New("kek resolver: the vault service, the local vault lookup and the identities are required")
	}
	return &Resolver{o: o, rest: map[string]kek.KEK{}, newREST: newRESTDriver}, nil
}

// KEK returns the driver that reaches keyID as ident ([system], "" for the same, or a
// managed identity's client id or object id): in-process for this process's vaults, with
// the identity's principal (which must be the system identity or a managed identity); REST
// for any other vault, with the identity's credential.
func (r *Resolver) KEK(ctx context.Context, ident, keyID string) (kek.KEK, error) {
	id, err := kek.ParseKeyID(keyID)
	if err != nil {
		return nil, err
	}
	_, local, err := r.o.Local.LocalVault(ctx, id.Vault)
	if err != nil {
		return nil, err // as the vault part said it (the key access check shows it)
	}
	if local {
		p, err := r.principal(ctx, ident)
		if err != nil {
			return nil, err
		}
		return inproc.New(r.o.Vault, p, r.o.Local.LocalVault), nil
	}
	return r.remote(ident, id.Vault)
}

// principal resolves the identity the process acts as in its own vaults.
func (r *Resolver) principal(ctx context.Context, ident string) (identity.Principal, error) {
	if isSystem(ident) {
		return r.o.Identities.SystemIdentity(), nil
	}
	p, err := r.o.Identities.Resolve(ctx, ident)
	if err != nil {
		return identity.Principal{}, fmt.Errorf("identity %s: %w", ident, err)
	}
	if p.Kind != identity.KindManagedIdentity && p.Kind != identity.KindSystemIdentity {
		return identity.Principal{}, fmt.Errorf("identity %s is a %s: the registry reaches its key as a managed identity (coffer identity create NAME) or as [system]", ident, p.Kind)
	}
	return p, nil
}

func isSystem(ident string) bool { return ident == "" || ident == SystemIdentity }

// credentialChoice is the credential a remote driver authenticates with.
type credentialChoice struct {
	// secret: the client-secret credential of Options.Credential; otherwise the
	// managed-identity credential.
	secret bool
	cred   Credential
	// managedID is the managed identity's client id to ask for ("" for the host's default).
	managedID string
}

// chooseCredential applies the precedence: the client-secret credential when a client id
// and secret are configured and the identity is [system] or that client id
// (case-insensitive); otherwise the managed-identity endpoint, for the identity's client id.
func chooseCredential(c Credential, ident string) credentialChoice {
	if c.ClientSecret != "" && c.ClientID != "" && (isSystem(ident) || strings.EqualFold(ident, c.ClientID)) {
		return credentialChoice{secret: true, cred: c}
	}
	ch := credentialChoice{}
	if !isSystem(ident) {
		ch.managedID = ident
	}
	return ch
}

// remote returns the REST driver for a vault of another server (or Azure Key Vault).
func (r *Resolver) remote(ident, vaultURL string) (kek.KEK, error) {
	cacheKey := ident + "\x00" + vaultURL
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.rest[cacheKey]; ok {
		return d, nil
	}
	hc, err := r.httpClient()
	if err != nil {
		return nil, err
	}
	d, err := r.newREST(chooseCredential(r.o.Credential, ident), vaultURL, hc)
	if err != nil {
		return nil, fmt.Errorf("credential for identity %s to reach %s: %w", ident, vaultURL, err)
	}
	r.rest[cacheKey] = d
	return d, nil
}

// httpClient trusts the system roots plus Options.CAFile.
func (r *Resolver) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if f := r.o.CAFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read --encryption-vault-ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--encryption-vault-ca-file %s holds no PEM certificate", f)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: time.Minute}, nil
}

// newRESTDriver makes the azidentity credential of c and a REST driver using it. The
// managed-identity credential finds its endpoint itself, in the process environment
// (IDENTITY_ENDPOINT and IDENTITY_HEADER, or MSI_ENDPOINT; IMDS otherwise): azidentity has
// no option for it.
func newRESTDriver(c credentialChoice, vaultURL string, hc *http.Client) (kek.KEK, error) {
	opts := policy.ClientOptions{Transport: hc}
	var cred azcore.TokenCredential
	var err error
	if c.secret {
		copts := &azidentity.ClientSecretCredentialOptions{ClientOptions: opts}
		if a := c.cred.AuthorityHost; a != "" {
			copts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: a}
			copts.DisableInstanceDiscovery = true
		}
		cred, err = azidentity.NewClientSecretCredential(c.cred.TenantID, c.cred.ClientID, c.cred.ClientSecret, copts)
	} else {
		mopts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts}
		if c.managedID != "" {
			mopts.ID = azidentity.ClientID(c.managedID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(mopts)
	}
	if err != nil {
		return nil, err
	}
	// A vault addressed by IP address or localhost (a vault on a port of its own) cannot
	// have a challenge resource that is a parent domain of its host.
	host := vaultURL
	if u, err := url.Parse(vaultURL); err == nil {
		host = u.Hostname()
	}
	byAddress := host == "localhost" || net.ParseIP(host) != nil
	return rest.New(cred, &rest.Options{ClientOptions: opts, DisableChallengeResourceVerification: byAddress}), nil
}

// NewRemote returns a resolver for a process that holds no vault of its own (the CLI's image
// decryption, the ocicrypt key provider on a node, the KMS plugin): every key is reached over REST with the
// Azure SDK, as the client-secret credential cred when it is set, else as the host's managed
// identity. caFile adds CA certificates to trust (as Options.CAFile).
func NewRemote(cred Credential, caFile string) *Resolver {
	return &Resolver{o: Options{Local: noLocalVaults{}, Credential: cred, CAFile: caFile}, rest: map[string]kek.KEK{}, newREST: newRESTDriver}
}

// noLocalVaults: a client process has no vault of its own.
type noLocalVaults struct{}

func (noLocalVaults) LocalVault(context.Context, string) (string, bool, error) { return "", false, nil }
