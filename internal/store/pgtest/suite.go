package pgtest

import "testing"

// Case is one case of a part's storage suite, run on each engine.
type Case struct {
	Name string
	Run  func(t *testing.T, open Open)
}

// Suite runs every case as a subtest of each engine's subtest (Engines): sqlite/NAME and
// postgresql/NAME, one PostgreSQL server for all of them.
func Suite(t *testing.T, cases ...Case) {
	t.Helper()
	Engines(t, func(t *testing.T, open Open) {
		for _, c := range cases {
			t.Run(c.Name, func(t *testing.T) { c.Run(t, open) })
		}
	})
}
