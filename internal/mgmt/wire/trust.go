package wire

// Content-trust policy statuses (the names of az acr config content-trust).
const (
	ContentTrustEnabled  = "enabled"
	ContentTrustDisabled = "disabled"
)

// ContentTrustPolicy is the registry's content-trust policy:
// GET /coffer/v1/registry/config/content-trust.
type ContentTrustPolicy struct {
	Status string `json:"status"`
}

// ContentTrustUpdate changes the policy: PATCH /coffer/v1/registry/config/content-trust.
// Disabling deletes every repository's Notary v1 trust data and every server-held trust
// key, irreversibly.
type ContentTrustUpdate struct {
	Status string `json:"status"`
}

// ContentTrustUpdated is the answer of an update: the new policy and, when it was
// disabled, what was deleted.
type ContentTrustUpdated struct {
	Status  string               `json:"status"`
	Deleted *ContentTrustDeleted `json:"deleted,omitempty"`
}

// ContentTrustDeleted counts what disabling content trust deleted.
type ContentTrustDeleted struct {
	Collections int `json:"collections"`
	Metadata    int `json:"metadata"`
	Keys        int `json:"keys"`
}
