package mgmt

import (
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/cofferhq/coffer/internal/authn"
)

// Router mounts the management API's handlers on a ServeMux through the route table: it
// refuses a pattern that Routes does not list, authenticates every route that is not
// public (Protect), serves the OpenAPI document, and remembers what was mounted.
type Router struct {
	mux      *http.ServeMux
	verifier authn.Verifier
	routes   map[string]Route

	mu         sync.Mutex
	registered []string
}

// NewRouter returns a router mounting on mux, authenticating with v. It mounts
// GET /coffer/v1/openapi.json itself.
func NewRouter(mux *http.ServeMux, v authn.Verifier) (*Router, error) {
	rt := &Router{mux: mux, verifier: v, routes: map[string]Route{}}
	for _, r := range Routes() {
		if _, dup := rt.routes[r.Pattern()]; dup {
			return nil, fmt.Errorf("management route table lists %s twice", r.Pattern())
		}
		rt.routes[r.Pattern()] = r
	}
	doc, err := OpenAPI()
	if err != nil {
		return nil, err
	}
	rt.Handle(http.MethodGet+" "+Prefix+"/openapi.json", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(doc)
	}))
	return rt, nil
}

// Handle mounts h for pattern ("METHOD /coffer/v1/..."), which must be a route of the
// table, mounted once. Like http.ServeMux.Handle it panics on a programming error.
func (rt *Router) Handle(pattern string, h http.Handler) { rt.HandleAround(pattern, h, nil) }

// HandleAround is Handle with around wrapping the authenticated handler: around sees every
// request, those that authentication refuses too (an audit of attempts needs them).
func (rt *Router) HandleAround(pattern string, h http.Handler, around func(http.Handler) http.Handler) {
	route, ok := rt.routes[pattern]
	if !ok {
		panic(fmt.Sprintf("mgmt: %s is not in the management route table (mgmt.Routes): add it there first", pattern))
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if slices.Contains(rt.registered, pattern) {
		panic(fmt.Sprintf("mgmt: %s is mounted twice", pattern))
	}
	if !route.Public {
		h = Protect(rt.verifier, h)
	}
	if around != nil {
		h = around(h)
	}
	rt.mux.Handle(pattern, h)
	rt.registered = append(rt.registered, pattern)
}

// HandleFunc is Handle for a function.
func (rt *Router) HandleFunc(pattern string, h http.HandlerFunc) { rt.Handle(pattern, h) }

// Registered returns the patterns mounted so far, sorted.
func (rt *Router) Registered() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	out := slices.Clone(rt.registered)
	slices.Sort(out)
	return out
}
