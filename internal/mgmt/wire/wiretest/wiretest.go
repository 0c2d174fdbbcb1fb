// Package wiretest holds the check the management handlers' tests share: a wire type must
// encode byte for byte as the domain type it replaced did, so moving the API onto the wire
// types changes no answer.
package wiretest

import (
	"encoding/json"
	"testing"
)

// SameJSON fails the test unless onWire encodes exactly as domain does.
func SameJSON(t testing.TB, name string, domain, onWire any) {
	t.Helper()
	a, err := json.Marshal(domain)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(onWire)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Errorf("%s on the wire changed:\nwas %s\nnow %s", name, a, b)
	}
}
