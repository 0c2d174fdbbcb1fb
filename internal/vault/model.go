package vault

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

// Typed errors. Every error the service returns wraps at most one of these; callers use
// errors.Is to tell why a call failed.
var (
	// ErrNotFound: the vault, key or version does not exist (or the key is deleted).
	ErrNotFound = errors.New("not found")
	// ErrForbidden: the caller lacks the permission (wraps access.ErrDenied too).
	ErrForbidden = errors.New("forbidden")
	// ErrNetworkDenied: the vault's network rules refuse the caller's address.
	ErrNetworkDenied = errors.New("network rule denies the caller")
	// ErrDisabled: the key version is disabled.
	ErrDisabled = errors.New("key is disabled")
	// ErrNotYetValid: the key version's nbf is in the future.
	ErrNotYetValid = errors.New("key is not yet valid")
	// ErrExpired: the key version's exp has passed.
	ErrExpired = errors.New("key has expired")
	// ErrConflict: the name is taken (possibly by a deleted key) or the state forbids it.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: bad input.
	ErrInvalid = keys.ErrInvalid
	// ErrOperationNotAllowed: the key's key_ops or type do not allow the operation.
	ErrOperationNotAllowed = errors.New("operation not allowed")
	// ErrPurgeProtected: purge refused while purge protection holds the key.
	ErrPurgeProtected = errors.New("purge protection is on")
)

// forbidden wraps both ErrForbidden and the access error.
func forbidden(err error) error { return fmt.Errorf("%w: %w", ErrForbidden, err) }

// Network rule actions and bypass values.
const (
	ActionAllow          = "Allow"
	ActionDeny           = "Deny"
	BypassCofferServices = "CofferServices"
	BypassNone           = "None"
)

// NetworkRules restrict which client addresses may use a vault's data plane.
type NetworkRules struct {
	DefaultAction string `json:"defaultAction"`
	// IPRules are addresses or CIDR ranges allowed when DefaultAction is Deny.
	IPRules []string `json:"ipRules"`
	// Bypass "CofferServices" lets Coffer's own in-process services (the registry, the KMS
	// plugin) through whatever the rules say; "None" subjects them to the rules too.
	Bypass string `json:"bypass"`
}

// Vault is a named vault and its properties.
type Vault struct {
	Name                    string       `json:"name"`
	URL                     string       `json:"vaultUri"`
	EnableRbacAuthorization bool         `json:"enableRbacAuthorization"`
	SoftDeleteRetentionDays int          `json:"softDeleteRetentionInDays"`
	EnablePurgeProtection   bool         `json:"enablePurgeProtection"`
	NetworkRules            NetworkRules `json:"networkAcls"`
	// Port, when not zero, is a port of the vault's own on which it answers whatever the
	// Host header says (so clients need no DNS name for the vault).
	Port int `json:"port,omitempty"`
	// HSM: the vault's -HSM keys are generated and used inside the server's PKCS#11 token
	// (set at creation; needs coffer serve --hsm-module).
	HSM     bool      `json:"hsm,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// VaultUpdate changes vault properties; nil fields stay as they are.
type VaultUpdate struct {
	EnableRbacAuthorization *bool         `json:"enableRbacAuthorization,omitempty"`
	SoftDeleteRetentionDays *int          `json:"softDeleteRetentionInDays,omitempty"`
	EnablePurgeProtection   *bool         `json:"enablePurgeProtection,omitempty"`
	NetworkRules            *NetworkRules `json:"networkAcls,omitempty"`
	Port                    *int          `json:"port,omitempty"`
}

var vaultNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{1,22}[a-z0-9]$`)

// ValidVaultName reports whether name can name a vault: 3-24 lower-case letters, digits and
// hyphens, starting with a letter (it becomes a DNS label).
func ValidVaultName(name string) error {
	if !vaultNameRE.MatchString(name) || strings.Contains(name, "--") {
		return fmt.Errorf("%w: vault name %q must be 3-24 lower-case letters, digits and single hyphens, starting with a letter", ErrInvalid, name)
	}
	return nil
}

// foldVault is the stored form of a vault name: vault names are case-insensitive (they are
// DNS labels), stored and compared in lower case.
func foldVault(name string) string { return strings.ToLower(name) }

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,127}$`)

// ValidKeyName reports whether name can name a key (1-127 letters, digits and hyphens).
func ValidKeyName(name string) error {
	if !keyNameRE.MatchString(name) {
		return fmt.Errorf("%w: key name %q must be 1-127 letters, digits and hyphens", ErrInvalid, name)
	}
	return nil
}

func (r *NetworkRules) normalize() error {
	switch strings.ToLower(r.DefaultAction) {
	case "", "allow":
		r.DefaultAction = ActionAllow
	case "deny":
		r.DefaultAction = ActionDeny
	default:
		return fmt.Errorf("%w: network default action %q must be Allow or Deny", ErrInvalid, r.DefaultAction)
	}
	switch strings.ToLower(r.Bypass) {
	case "", "cofferservices", "azureservices":
		r.Bypass = BypassCofferServices
	case "none":
		r.Bypass = BypassNone
	default:
		return fmt.Errorf("%w: network bypass %q must be CofferServices or None", ErrInvalid, r.Bypass)
	}
	for i, rule := range r.IPRules {
		p, err := parsePrefix(rule)
		if err != nil {
			return err
		}
		r.IPRules[i] = p.String()
	}
	if r.IPRules == nil {
		r.IPRules = []string{}
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%w: network rule %q is not an address or CIDR range", ErrInvalid, s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: network rule %q is not an address or CIDR range", ErrInvalid, s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// Attributes are a key version's attributes.
type Attributes struct {
	Enabled   bool       `json:"enabled"`
	NotBefore *time.Time `json:"nbf,omitempty"`
	Expires   *time.Time `json:"exp,omitempty"`
	Created   time.Time  `json:"created"`
	Updated   time.Time  `json:"updated"`
	// RecoveryLevel and RecoverableDays describe soft delete as Key Vault does.
	RecoveryLevel   string `json:"recoveryLevel"`
	RecoverableDays int    `json:"recoverableDays"`
	Exportable      bool   `json:"exportable"`
	// HSMPlatform names the PKCS#11 token holding the key; empty for a key held in
	// software (which a -HSM key of a vault without an HSM is).
	HSMPlatform string `json:"hsmPlatform,omitempty"`
}

// Key is one key version as callers see it (public material only).
type Key struct {
	ID         string            `json:"kid"`
	Vault      string            `json:"vault"`
	Name       string            `json:"name"`
	Version    string            `json:"version"`
	JWK        keys.JWK          `json:"key"`
	Attributes Attributes        `json:"attributes"`
	Tags       map[string]string `json:"tags"`
	// Managed is always false (no certificate-backed keys).
	Managed bool `json:"managed"`
	// Size is the key size in bits.
	Size int `json:"keySize"`
}

// Kty returns the key type.
func (k Key) Kty() string { return k.JWK.Kty }

// DeletedKey is a soft-deleted key (its newest version).
type DeletedKey struct {
	Key
	RecoveryID         string    `json:"recoveryId"`
	DeletedDate        time.Time `json:"deletedDate"`
	ScheduledPurgeDate time.Time `json:"scheduledPurgeDate"`
}

// CreateKeyParams are the inputs of CreateKey.
type CreateKeyParams struct {
	Kty            string
	Size           int
	Curve          string
	PublicExponent int
	KeyOps         []string
	Enabled        *bool
	NotBefore      *time.Time
	Expires        *time.Time
	Tags           map[string]string
}

// ImportKeyParams are the inputs of ImportKey.
type ImportKeyParams struct {
	JWK       keys.JWK
	HSM       bool
	Enabled   *bool
	NotBefore *time.Time
	Expires   *time.Time
	Tags      map[string]string
}

// UpdateKeyParams change a version's attributes; nil fields stay.
type UpdateKeyParams struct {
	KeyOps    []string
	Enabled   *bool
	NotBefore *time.Time
	Expires   *time.Time
	// ClearNotBefore/ClearExpires remove the dates.
	Tags *map[string]string
}

// Page is a page of a listing; Next is empty on the last page.
type Page[T any] struct {
	Items []T
	Next  string
}

// LifetimeAction is one rotation-policy action.
type LifetimeAction struct {
	Trigger struct {
		TimeAfterCreate  string `json:"timeAfterCreate,omitempty"`
		TimeBeforeExpiry string `json:"timeBeforeExpiry,omitempty"`
	} `json:"trigger"`
	Action struct {
		Type string `json:"type"`
	} `json:"action"`
}

// RotationPolicy says when a key is rotated and how long new versions live.
type RotationPolicy struct {
	ID              string           `json:"id"`
	LifetimeActions []LifetimeAction `json:"lifetimeActions"`
	Attributes      struct {
		ExpiryTime string    `json:"expiryTime,omitempty"`
		Created    time.Time `json:"created"`
		Updated    time.Time `json:"updated"`
	} `json:"attributes"`
}

// Operation names (audit and access).
const (
	OpWrap    = "wrapKey"
	OpUnwrap  = "unwrapKey"
	OpEncrypt = "encrypt"
	OpDecrypt = "decrypt"
	OpSign    = "sign"
	OpVerify  = "verify"
)

var opAction = map[string]access.Action{
	OpWrap: access.KeyWrap, OpUnwrap: access.KeyUnwrap, OpEncrypt: access.KeyEncrypt,
	OpDecrypt: access.KeyDecrypt, OpSign: access.KeySign, OpVerify: access.KeyVerify,
}
