package wire

import "time"

// Key management options of a cluster's KMS v2 encryption (docs/kms.md).
const (
	// KMSPlatformManaged: Coffer creates and rotates the key in its platform vault.
	KMSPlatformManaged = "PMK"
	// KMSCustomerManaged: the team's key, in a vault it controls.
	KMSCustomerManaged = "CMK"
	// KMSNetworkPublic: the plugin reaches the key vault directly over HTTPS.
	KMSNetworkPublic = "Public"
	// KMSNetworkPrivate: the plugin reaches the key through Coffer, as a Coffer service
	// (the vault's trusted-service bypass applies).
	KMSNetworkPrivate = "Private"
	// KMSAccessDirect and KMSAccessCoffer say how the plugin reaches a key.
	KMSAccessDirect = "direct"
	KMSAccessCoffer = "coffer"
)

// KMSClusterRequest creates or changes a cluster's settings. On update, empty fields stay
// as they are.
type KMSClusterRequest struct {
	Name string `json:"name,omitempty"`
	// KeyManagement is PMK or CMK.
	KeyManagement string `json:"keyManagement,omitempty"`
	// KeyID is the CMK's versionless key id, https://VAULT-HOST/keys/NAME.
	KeyID string `json:"keyId,omitempty"`
	// KeyVaultNetworkAccess is Public (default) or Private.
	KeyVaultNetworkAccess string `json:"keyVaultNetworkAccess,omitempty"`
	// Identity is the plugin's identity: a service principal (name, object id or client id).
	Identity string `json:"identity,omitempty"`
	// InfrastructureEncryption is Enabled or Disabled (default).
	InfrastructureEncryption string `json:"infrastructureEncryption,omitempty"`
}

// KMSSecurityProfile is the cluster's securityProfile, in the shape of the managed
// Kubernetes service's API.
type KMSSecurityProfile struct {
	AzureKeyVaultKms                          KMSAzureKeyVaultKms                          `json:"azureKeyVaultKms"`
	KubernetesResourceObjectEncryptionProfile KMSKubernetesResourceObjectEncryptionProfile `json:"kubernetesResourceObjectEncryptionProfile"`
}

// KMSAzureKeyVaultKms is securityProfile.azureKeyVaultKms.
type KMSAzureKeyVaultKms struct {
	Enabled               bool   `json:"enabled"`
	KeyID                 string `json:"keyId"`
	KeyVaultNetworkAccess string `json:"keyVaultNetworkAccess"`
	KeyVaultResourceID    string `json:"keyVaultResourceId"`
}

// KMSKubernetesResourceObjectEncryptionProfile is
// securityProfile.kubernetesResourceObjectEncryptionProfile.
type KMSKubernetesResourceObjectEncryptionProfile struct {
	InfrastructureEncryption string `json:"infrastructureEncryption"`
}

// KMSCluster is a cluster's settings and state.
type KMSCluster struct {
	Name            string             `json:"name"`
	SecurityProfile KMSSecurityProfile `json:"securityProfile"`
	KeyManagement   string             `json:"keyManagement"`
	Identity        string             `json:"identity"`
	// CurrentKeyID is the versioned key id the plugin last reported as its key_id.
	CurrentKeyID string `json:"currentKeyId,omitempty"`
	// DecryptOnlyKeys are the earlier write keys, still held so old Secrets read.
	DecryptOnlyKeys []KMSDecryptKey `json:"decryptOnlyKeys"`
	// KeyCheck says how the key was checked when it was configured.
	KeyCheck     string           `json:"keyCheck,omitempty"`
	PluginStatus *KMSPluginStatus `json:"pluginStatus,omitempty"`
	Created      time.Time        `json:"created"`
	Updated      time.Time        `json:"updated"`
}

// KMSDecryptKey is an earlier write key.
type KMSDecryptKey struct {
	KeyID         string `json:"keyId"`
	KeyManagement string `json:"keyManagement"`
	// KeyVaultNetworkAccess is how the plugin reached it while it was the write key.
	KeyVaultNetworkAccess string    `json:"keyVaultNetworkAccess"`
	Since                 time.Time `json:"since"`
	// Retirable: every resource was rewritten under a later key (coffer kms reencrypt).
	Retirable bool `json:"retirable"`
}

// KMSPluginStatus is the plugin's last Status, as it reported it.
type KMSPluginStatus struct {
	KeyID      string    `json:"keyId"`
	Healthz    string    `json:"healthz"`
	Error      string    `json:"error,omitempty"`
	CheckedAt  time.Time `json:"checkedAt"`
	ReportedAt time.Time `json:"reportedAt"`
}

// KMSPluginSettings is what the plugin fetches with its identity.
type KMSPluginSettings struct {
	WriteKey    string   `json:"writeKey"`
	DecryptKeys []string `json:"decryptKeys"`
	// Access is how the plugin reaches the write key: direct (it calls the vault) or
	// coffer (through Coffer's /plugin/wrapkey, /unwrapkey and /key).
	Access string `json:"access"`
	// ThroughCoffer are the keys (versionless ids, write and decrypt-only) reached through
	// Coffer; every other key is reached directly.
	ThroughCoffer []string `json:"throughCoffer"`
}

// KMSWrapRequest asks Coffer to wrap or unwrap a value as the plugin (Value: base64url).
type KMSWrapRequest struct {
	KeyID string `json:"keyId"`
	Value string `json:"value"`
}

// KMSWrapResponse is a wrapped or unwrapped value and the versioned key id used.
type KMSWrapResponse struct {
	KID   string `json:"kid"`
	Value string `json:"value"`
}

// KMSKeyInfo is a key version's public properties, read through Coffer.
type KMSKeyInfo struct {
	KID     string   `json:"kid"`
	Kty     string   `json:"kty"`
	Enabled bool     `json:"enabled"`
	KeyOps  []string `json:"keyOps,omitempty"`
}

// KMSRetireRequest marks decrypt-only keys retirable once every resource was rewritten
// under WriteKeyID (the versioned key id all of them now carry).
type KMSRetireRequest struct {
	WriteKeyID string `json:"writeKeyId"`
}
