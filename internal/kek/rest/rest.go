// Package rest is the KEK driver for any vault that speaks the Azure Key Vault keys REST
// API: Coffer's vault in another process, or Azure Key Vault itself. It uses the real
// azkeys SDK client with an azcore credential (a client secret or a managed identity), so
// the token flow, the authentication challenge and retries are exactly the SDK's.
package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cofferhq/coffer/internal/kek"
)

// Options configure the SDK clients.
type Options struct {
	// ClientOptions are passed to every azkeys client (transport with a private CA,
	// retries, telemetry).
	ClientOptions policy.ClientOptions
	// DisableChallengeResourceVerification lets the vault's challenge name a resource that
	// is not a parent domain of the vault host (a vault addressed by IP or port).
	DisableChallengeResourceVerification bool
}

// Driver reaches keys in one or more vaults as one identity.
type Driver struct {
	cred azcore.TokenCredential
	opts Options

	mu      sync.Mutex
	clients map[string]*azkeys.Client // by vault URL
}

// New returns a driver that authenticates with cred.
func New(cred azcore.TokenCredential, o *Options) *Driver {
	d := &Driver{cred: cred, clients: map[string]*azkeys.Client{}}
	if o != nil {
		d.opts = *o
	}
	return d
}

var _ kek.KEK = (*Driver)(nil)

func (d *Driver) client(keyID string) (*azkeys.Client, kek.KeyID, error) {
	id, err := kek.ParseKeyID(keyID)
	if err != nil {
		return nil, id, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.clients[id.Vault]; ok {
		return c, id, nil
	}
	c, err := azkeys.NewClient(id.Vault, d.cred, &azkeys.ClientOptions{
		ClientOptions:                        d.opts.ClientOptions,
		DisableChallengeResourceVerification: d.opts.DisableChallengeResourceVerification,
	})
	if err != nil {
		return nil, id, fmt.Errorf("key vault client for %s: %w", id.Vault, err)
	}
	d.clients[id.Vault] = c
	return c, id, nil
}

// GetKey reads the key's properties.
func (d *Driver) GetKey(ctx context.Context, keyID string) (kek.KeyInfo, error) {
	c, id, err := d.client(keyID)
	if err != nil {
		return kek.KeyInfo{}, err
	}
	resp, err := c.GetKey(ctx, id.Name, id.Version, nil)
	if err != nil {
		return kek.KeyInfo{}, mapError("get", keyID, err)
	}
	if resp.Key == nil || resp.Key.KID == nil || resp.Key.Kty == nil {
		return kek.KeyInfo{}, &kek.Error{Op: "get", KeyID: keyID, Kind: kek.ErrUnavailable, Detail: "the vault's answer has no key"}
	}
	info := kek.KeyInfo{KID: string(*resp.Key.KID), Type: string(*resp.Key.Kty), Enabled: true, N: resp.Key.N, E: resp.Key.E}
	if resp.Attributes != nil && resp.Attributes.Enabled != nil {
		info.Enabled = *resp.Attributes.Enabled
	}
	for _, op := range resp.Key.KeyOps {
		if op != nil {
			info.Ops = append(info.Ops, string(*op))
		}
	}
	return info, nil
}

func params(alg string, value []byte) azkeys.KeyOperationParameters {
	a := azkeys.EncryptionAlgorithm(alg)
	return azkeys.KeyOperationParameters{Algorithm: &a, Value: value}
}

// WrapKey wraps secret with RSA-OAEP-256 (RSA-OAEP, recorded, when the key's HSM cannot).
func (d *Driver) WrapKey(ctx context.Context, keyID string, secret []byte) (string, []byte, error) {
	c, id, err := d.client(keyID)
	if err != nil {
		return "", nil, err
	}
	return kek.WrapWithFallback(func(alg string) (string, []byte, error) {
		resp, err := c.WrapKey(ctx, id.Name, id.Version, params(alg, secret), nil)
		if err != nil {
			return "", nil, mapError("wrapKey", keyID, err)
		}
		if resp.KID == nil || len(resp.Result) == 0 {
			return "", nil, &kek.Error{Op: "wrapKey", KeyID: keyID, Kind: kek.ErrUnavailable, Detail: "the vault's answer has no kid or result"}
		}
		return string(*resp.KID), resp.Result, nil
	})
}

// UnwrapKey unwraps with the algorithm the wrapped value records.
func (d *Driver) UnwrapKey(ctx context.Context, kid string, wrapped []byte) ([]byte, error) {
	alg, raw := kek.RecordedAlgorithm(wrapped)
	return d.UnwrapKeyAlgorithm(ctx, kid, alg, raw)
}

// UnwrapKeyAlgorithm unwraps a bare wrapped value (no recorded algorithm) with alg
// (kek.AlgorithmUnwrapper): a JWE's encrypted key names its algorithm in its header.
func (d *Driver) UnwrapKeyAlgorithm(ctx context.Context, kid, alg string, wrapped []byte) ([]byte, error) {
	c, id, err := d.client(kid)
	if err != nil {
		return nil, err
	}
	resp, err := c.UnwrapKey(ctx, id.Name, id.Version, params(alg, wrapped), nil)
	if err != nil {
		return nil, mapError("unwrapKey", kid, err)
	}
	return resp.Result, nil
}

// innerAlgorithmNotSupportedByHSM is the innererror code with which Coffer's vault refuses
// an algorithm the key's HSM token cannot run.
const innerAlgorithmNotSupportedByHSM = "AlgorithmNotSupportedByHSM"

// mapError turns an SDK error into a *kek.Error of the right kind, keeping the vault's
// status, code and message.
func mapError(op, keyID string, err error) error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return &kek.Error{Op: op, KeyID: keyID, Kind: kek.ErrUnavailable, Detail: err.Error()}
	}
	code, inner, msg := re.ErrorCode, "", ""
	if re.RawResponse != nil {
		if body, berr := runtime.Payload(re.RawResponse); berr == nil {
			var eb struct {
				Error struct {
					Code       string `json:"code"`
					Message    string `json:"message"`
					InnerError *struct {
						Code string `json:"code"`
					} `json:"innererror"`
				} `json:"error"`
			}
			if json.Unmarshal(body, &eb) == nil {
				if eb.Error.Code != "" {
					code = eb.Error.Code
				}
				msg = eb.Error.Message
				if eb.Error.InnerError != nil {
					inner = eb.Error.InnerError.Code
				}
			}
		}
	}
	var kind error
	lower := strings.ToLower(msg)
	switch {
	case re.StatusCode == http.StatusNotFound:
		kind = kek.ErrNotFound
	case re.StatusCode == http.StatusForbidden && inner == "ForbiddenByFirewall":
		kind = kek.ErrNetworkDenied
	case re.StatusCode == http.StatusForbidden && (inner == "KeyDisabled" || strings.Contains(lower, "disabled")):
		kind = kek.ErrDisabled
	case re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden:
		kind = kek.ErrForbidden
	case re.StatusCode == http.StatusBadRequest && inner == innerAlgorithmNotSupportedByHSM:
		kind = kek.ErrAlgorithmUnsupported
	case re.StatusCode == http.StatusBadRequest:
		kind = kek.ErrInvalid
	default:
		kind = kek.ErrUnavailable
	}
	detail := fmt.Sprintf("HTTP %d", re.StatusCode)
	if code != "" {
		detail += " " + code
	}
	if inner != "" {
		detail += " (" + inner + ")"
	}
	if msg != "" {
		detail += ": " + msg
	}
	return &kek.Error{Op: op, KeyID: keyID, Kind: kind, Detail: detail}
}
