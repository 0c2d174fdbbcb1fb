package tokenapi_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/token"
)

// BenchmarkRepeatedTokenRequests is docker's pattern: one Basic-auth token request per
// repository, always with the same credentials, over HTTPS to a real server.
func BenchmarkRepeatedTokenRequests(b *testing.B) {
	inst := servertest.Start(b, nil)
	q := url.Values{"service": {token.RegistryService}, "scope": {"repository:team/app:pull,push"}}
	u := inst.URL + "/oauth2/token?" + q.Encode()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.SetBasicAuth("admin", inst.AdminPassword)
		resp, err := inst.Client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("token request %d: %d", i, resp.StatusCode)
		}
	}
}
