package identityapi_test

import (
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/identity/identityapi"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/mgmt/wire/wiretest"
)

func TestWireTypesEncodeAsTheIdentityTypesDid(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, info := range []identity.Info{
		{Principal: identity.Principal{ID: "i", Kind: identity.KindServicePrincipal, Name: "n", ClientID: "c"}, CreatedAt: now,
			Credentials: []identity.CredentialInfo{{ID: "s", Hint: "h", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}}},
		{Credentials: []identity.CredentialInfo{}},
		{},
	} {
		wiretest.SameJSON(t, "identity", info, identityapi.Identity(info))
		mi := struct {
			identity.Info
			PrincipalID string `json:"principalId"`
			TenantID    string `json:"tenantId"`
		}{info, info.ID, "t"}
		wiretest.SameJSON(t, "managed identity", mi, wire.ManagedIdentity{Identity: identityapi.Identity(info), PrincipalID: info.ID, TenantID: "t"})
		who := struct {
			identity.Principal
			TenantID  string    `json:"tenantId"`
			ExpiresAt time.Time `json:"tokenExpiresAt"`
		}{info.Principal, "t", now}
		wiretest.SameJSON(t, "whoami", who, wire.Whoami{Principal: identityapi.Principal(info.Principal), TenantID: "t", ExpiresAt: now})
	}
}
