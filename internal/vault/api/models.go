package api

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

// unixTime is a timestamp as Key Vault writes it: integer Unix seconds. It reads integers,
// floats and numeric strings.
type unixTime int64

func (u *unixTime) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		var s string
		if json.Unmarshal(b, &s) != nil {
			return fmt.Errorf("timestamp must be Unix seconds")
		}
		n = json.Number(s)
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return fmt.Errorf("timestamp must be Unix seconds")
	}
	*u = unixTime(int64(f))
	return nil
}

func (u *unixTime) time() *time.Time {
	if u == nil {
		return nil
	}
	t := time.Unix(int64(*u), 0).UTC()
	return &t
}

func secs(t time.Time) int64 { return t.Unix() }

func secsPtr(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := t.Unix()
	return &v
}

type attributesOut struct {
	Enabled         bool   `json:"enabled"`
	NotBefore       *int64 `json:"nbf,omitempty"`
	Expires         *int64 `json:"exp,omitempty"`
	Created         int64  `json:"created"`
	Updated         int64  `json:"updated"`
	RecoveryLevel   string `json:"recoveryLevel"`
	RecoverableDays int    `json:"recoverableDays"`
	Exportable      bool   `json:"exportable"`
	HSMPlatform     string `json:"hsmPlatform,omitempty"`
}

type attributesIn struct {
	Enabled    *bool     `json:"enabled"`
	NotBefore  *unixTime `json:"nbf"`
	Expires    *unixTime `json:"exp"`
	Exportable *bool     `json:"exportable"`
}

type keyBundle struct {
	Key        keys.JWK          `json:"key"`
	Attributes attributesOut     `json:"attributes"`
	Tags       map[string]string `json:"tags"`
	Managed    bool              `json:"managed,omitempty"`
}

type keyItem struct {
	Kid        string            `json:"kid"`
	Attributes attributesOut     `json:"attributes"`
	Tags       map[string]string `json:"tags"`
	Managed    bool              `json:"managed,omitempty"`
}

type deletedKeyBundle struct {
	keyBundle
	RecoveryID         string `json:"recoveryId"`
	ScheduledPurgeDate int64  `json:"scheduledPurgeDate"`
	DeletedDate        int64  `json:"deletedDate"`
}

type deletedKeyItem struct {
	keyItem
	RecoveryID         string `json:"recoveryId"`
	ScheduledPurgeDate int64  `json:"scheduledPurgeDate"`
	DeletedDate        int64  `json:"deletedDate"`
}

func attrsOut(a vault.Attributes) attributesOut {
	return attributesOut{Enabled: a.Enabled, NotBefore: secsPtr(a.NotBefore), Expires: secsPtr(a.Expires),
		Created: secs(a.Created), Updated: secs(a.Updated), RecoveryLevel: a.RecoveryLevel,
		RecoverableDays: a.RecoverableDays, Exportable: a.Exportable, HSMPlatform: a.HSMPlatform}
}

func bundle(k vault.Key) keyBundle {
	return keyBundle{Key: k.JWK, Attributes: attrsOut(k.Attributes), Tags: k.Tags}
}

func item(k vault.Key) keyItem {
	return keyItem{Kid: k.ID, Attributes: attrsOut(k.Attributes), Tags: k.Tags}
}

func deletedBundle(d vault.DeletedKey) deletedKeyBundle {
	return deletedKeyBundle{keyBundle: bundle(d.Key), RecoveryID: d.RecoveryID,
		ScheduledPurgeDate: secs(d.ScheduledPurgeDate), DeletedDate: secs(d.DeletedDate)}
}

func deletedItem(d vault.DeletedKey) deletedKeyItem {
	return deletedKeyItem{keyItem: item(d.Key), RecoveryID: d.RecoveryID,
		ScheduledPurgeDate: secs(d.ScheduledPurgeDate), DeletedDate: secs(d.DeletedDate)}
}

type createKeyRequest struct {
	Kty            string            `json:"kty"`
	KeySize        *int              `json:"key_size"`
	PublicExponent *int              `json:"public_exponent"`
	KeyOps         []string          `json:"key_ops"`
	Attributes     *attributesIn     `json:"attributes"`
	Tags           map[string]string `json:"tags"`
	Crv            string            `json:"crv"`
	ReleasePolicy  json.RawMessage   `json:"release_policy"`
}

type importKeyRequest struct {
	HSM           *bool             `json:"Hsm"`
	Key           *keys.JWK         `json:"key"`
	Attributes    *attributesIn     `json:"attributes"`
	Tags          map[string]string `json:"tags"`
	ReleasePolicy json.RawMessage   `json:"release_policy"`
}

type updateKeyRequest struct {
	KeyOps        []string           `json:"key_ops"`
	Attributes    *attributesIn      `json:"attributes"`
	Tags          *map[string]string `json:"tags"`
	ReleasePolicy json.RawMessage    `json:"release_policy"`
}

type keyOperationRequest struct {
	Alg   string   `json:"alg"`
	Value keys.B64 `json:"value"`
	IV    keys.B64 `json:"iv"`
	AAD   keys.B64 `json:"aad"`
	Tag   keys.B64 `json:"tag"`
}

type keyOperationResult struct {
	Kid   string   `json:"kid"`
	Value keys.B64 `json:"value"`
	IV    keys.B64 `json:"iv,omitempty"`
	Tag   keys.B64 `json:"tag,omitempty"`
	AAD   keys.B64 `json:"aad,omitempty"`
}

type signRequest struct {
	Alg   string   `json:"alg"`
	Value keys.B64 `json:"value"`
}

type verifyRequest struct {
	Alg       string   `json:"alg"`
	Digest    keys.B64 `json:"digest"`
	Signature keys.B64 `json:"value"`
}

type verifyResult struct {
	Value bool `json:"value"`
}

type backupResult struct {
	Value keys.B64 `json:"value"`
}

type restoreRequest struct {
	Value keys.B64 `json:"value"`
}

type randomRequest struct {
	Count int `json:"count"`
}

type listResult[T any] struct {
	Value    []T     `json:"value"`
	NextLink *string `json:"nextLink"`
}

type rotationPolicyJSON struct {
	ID              string                 `json:"id,omitempty"`
	LifetimeActions []vault.LifetimeAction `json:"lifetimeActions"`
	Attributes      *struct {
		ExpiryTime string `json:"expiryTime,omitempty"`
		Created    int64  `json:"created,omitempty"`
		Updated    int64  `json:"updated,omitempty"`
	} `json:"attributes,omitempty"`
}

func policyOut(p vault.RotationPolicy) rotationPolicyJSON {
	out := rotationPolicyJSON{ID: p.ID, LifetimeActions: p.LifetimeActions}
	if out.LifetimeActions == nil {
		out.LifetimeActions = []vault.LifetimeAction{}
	}
	out.Attributes = &struct {
		ExpiryTime string `json:"expiryTime,omitempty"`
		Created    int64  `json:"created,omitempty"`
		Updated    int64  `json:"updated,omitempty"`
	}{ExpiryTime: p.Attributes.ExpiryTime}
	if !p.Attributes.Created.IsZero() {
		out.Attributes.Created = p.Attributes.Created.Unix()
		out.Attributes.Updated = p.Attributes.Updated.Unix()
	}
	return out
}
