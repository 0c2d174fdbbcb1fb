package tokenapi_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/token"
)

// TestDeletedPrincipalsTokensAreRefusedAtOnce: tokens of a deleted principal stop working
// on every API at once, not when they expire.
func TestDeletedPrincipalsTokensAreRefusedAtOnce(t *testing.T) {
	inst := servertest.Start(t, nil)
	ctx := context.Background()
	if _, err := inst.Server.Identities().CreateUser(ctx, "leaver", "leaver-password"); err != nil {
		t.Fatal(err)
	}
	_, reg := getToken(t, inst, "leaver", "leaver-password", url.Values{"service": {token.RegistryService}})
	_, mg := postForm(t, inst, "/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"leaver"},
		"password": {"leaver-password"}, "service": {token.AudienceManagement}})
	call := func(path, tok string) int {
		req, _ := http.NewRequest(http.MethodGet, inst.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := call("/v2/", reg.Token); st != http.StatusOK {
		t.Fatalf("registry token before the deletion: %d", st)
	}
	if st := call("/coffer/v1/whoami", mg.AccessToken); st != http.StatusOK {
		t.Fatalf("management token before the deletion: %d", st)
	}
	if err := inst.Server.Identities().Delete(ctx, identity.KindUser, "leaver"); err != nil {
		t.Fatal(err)
	}
	if st := call("/v2/", reg.Token); st != http.StatusUnauthorized {
		t.Fatalf("registry token of a deleted user: %d, want 401", st)
	}
	if st := call("/coffer/v1/whoami", mg.AccessToken); st != http.StatusUnauthorized {
		t.Fatalf("management token of a deleted user: %d, want 401", st)
	}
}
