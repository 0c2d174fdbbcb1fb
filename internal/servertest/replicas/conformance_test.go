package replicas_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/registry/conformance"
)

// TestConformanceThroughProxy runs the repo's conformance suite (monolithic, POST+PUT,
// chunked and resumed pushes, cancel, digest mismatch, sha512, mounts, manifests, tag
// paging, catalog, deletes, referrers, names, auth challenges) against the round-robin
// proxy. The suite's requests are sequential and only they go through the proxy (tokens
// are fetched from the replicas directly), so every request lands on the other replica
// than the one before: an upload's POST, PATCHes and PUT, a tag list's pages, a push and
// the read that checks it alternate between the replicas.
func TestConformanceThroughProxy(t *testing.T) {
	c := startCluster(t, nil)
	var mu sync.Mutex
	tokens := map[string]string{}
	issued := 0
	conformance.Run(t, conformance.Target{
		URL:    c.proxy.URL,
		Client: c.client,
		Token: func(t *testing.T, scopes ...string) string {
			t.Helper()
			key := strings.Join(scopes, " ")
			mu.Lock()
			defer mu.Unlock()
			if tok, ok := tokens[key]; ok {
				return tok
			}
			// From each replica in turn: a token one replica issued is used on both.
			r := c.replicas[issued%2]
			issued++
			q := url.Values{"service": {"coffer-registry"}, "scope": scopes}
			req, _ := http.NewRequest(http.MethodGet, r.URL+"/oauth2/token?"+q.Encode(), nil)
			req.SetBasicAuth("admin", c.password)
			resp, err := r.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var tr struct {
				Token string `json:"token"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != http.StatusOK || tr.Token == "" {
				t.Fatalf("registry token from %s: %d %v", r.URL, resp.StatusCode, err)
			}
			tokens[key] = tr.Token
			return tr.Token
		},
	})
	a, b := c.replicas[0], c.replicas[1]
	ha, hb := c.hits[0].Load(), c.hits[1].Load()
	t.Logf("the proxy sent %d requests to %s and %d to %s", ha, a.Addr, hb, b.Addr)
	if ha < 100 || hb < 100 || ha-hb > 1 || hb-ha > 1 {
		t.Fatalf("the proxy sent %d and %d requests: the suite did not alternate between the replicas", ha, hb)
	}
}
