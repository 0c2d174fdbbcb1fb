// Package vaulttest starts a real Coffer server for vault integration tests and gives them
// what an Azure SDK client needs: service principals with client secrets, access policies,
// a ClientSecretCredential from Coffer's token service and an HTTP client that trusts the
// server's CA and maps vault host names to the server (no DNS needed). Used by the main
// module's tests and by the nested modules that pin other azkeys versions.
package vaulttest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/servertest"
)

// Env is a running server with an administrator's management token.
type Env struct {
	Inst     *servertest.Instance
	Token    string
	TenantID string
	// HTTP trusts the CA and dials any *.<vault domain> host on the main port.
	HTTP *http.Client
}

// Start runs a server and logs in as the administrator.
func Start(t testing.TB, mutate func(*config.Server)) *Env {
	t.Helper()
	inst := servertest.Start(t, mutate)
	e := &Env{Inst: inst}
	_, port, _ := net.SplitHostPort(inst.Addr)
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	domain := "." + inst.Config.Vault.Domain
	tr := inst.Client.Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, p, err := net.SplitHostPort(addr)
		if err == nil && strings.HasSuffix(host, domain) && p == port {
			addr = inst.Addr
		}
		return dialer.DialContext(ctx, network, addr)
	}
	tr.MaxIdleConnsPerHost = 64
	tr.TLSClientConfig = &tls.Config{RootCAs: inst.CAPool}
	e.HTTP = &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	e.Token = inst.ManagementToken(t, inst.AdminPassword)
	var who struct {
		TenantID string `json:"tenantId"`
	}
	e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	e.TenantID = who.TenantID
	return e
}

// APIError is a management API error.
type APIError struct {
	Status int
	Body   string
}

func (e *APIError) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Body) }

// Do calls the management API as the administrator.
func (e *Env) Do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, _ := json.Marshal(in)
		body = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, e.Inst.URL+path, body)
	req.Header.Set("Authorization", "Bearer "+e.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.Inst.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return &APIError{Status: resp.StatusCode, Body: string(raw)}
	}
	if out != nil && len(raw) > 0 {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// MustDo is Do that fails the test on error.
func (e *Env) MustDo(t testing.TB, method, path string, in, out any) {
	t.Helper()
	if err := e.Do(method, path, in, out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

// Vault is what the tests need of a created vault.
type Vault struct {
	Name     string `json:"name"`
	VaultURI string `json:"vaultUri"`
	Port     int    `json:"port"`
}

// CreateVault creates a vault; props are extra properties (enablePurgeProtection, port...).
func (e *Env) CreateVault(t testing.TB, name string, props map[string]any) Vault {
	t.Helper()
	body := map[string]any{"name": name}
	for k, v := range props {
		body[k] = v
	}
	var v Vault
	e.MustDo(t, "POST", "/coffer/v1/vaults", body, &v)
	return v
}

// Principal is a service principal with its secret.
type Principal struct {
	ObjectID, ClientID, Secret string
}

// ServicePrincipal creates a service principal.
func (e *Env) ServicePrincipal(t testing.TB, name string) Principal {
	t.Helper()
	var out struct {
		ServicePrincipal struct {
			ID string `json:"id"`
		} `json:"servicePrincipal"`
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}
	e.MustDo(t, "POST", "/coffer/v1/servicePrincipals", map[string]any{"name": name}, &out)
	return Principal{ObjectID: out.ServicePrincipal.ID, ClientID: out.ClientID, Secret: out.ClientSecret}
}

// SetPolicy gives objectID the key permissions in vault (access-policy model).
func (e *Env) SetPolicy(t testing.TB, vault, objectID string, perms ...string) {
	t.Helper()
	e.MustDo(t, "PUT", "/coffer/v1/vaults/"+vault+"/access-policies/"+objectID, map[string]any{"keyPermissions": perms}, nil)
}

// Credential is an azidentity.ClientSecretCredential against Coffer's token service.
func (e *Env) Credential(t testing.TB, p Principal) azcore.TokenCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(e.TenantID, p.ClientID, p.Secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: policy.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: e.Inst.URL + "/"},
			Transport: e.HTTP,
		},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatalf("credential: %v", err)
	}
	return cred
}

// HostURL is the host-name URL of vault name (https://NAME.<domain>:PORT).
func (e *Env) HostURL(name string) string {
	_, port, _ := net.SplitHostPort(e.Inst.Addr)
	return "https://" + name + "." + e.Inst.Config.Vault.Domain + ":" + port
}

// SystemIdentity returns the object id of the server's system-assigned identity (the
// registry's own).
func (e *Env) SystemIdentity(t testing.TB) string {
	t.Helper()
	var list struct {
		Value []struct {
			ID   string `json:"id"`
			Kind string `json:"kind"`
		} `json:"value"`
	}
	e.MustDo(t, "GET", "/coffer/v1/managedIdentities", nil, &list)
	for _, p := range list.Value {
		if p.Kind == "systemAssignedIdentity" {
			return p.ID
		}
	}
	t.Fatal("no system identity listed")
	return ""
}

// Eventually retries f every 100 ms until it returns nil, and fails the test with f's last
// error if within passes first; it returns how long it took.
func Eventually(t testing.TB, within time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < within {
		if err = f(); err == nil {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, within, err)
	return 0
}
