package console_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestConsoleTablesSortAndEmpty: the tables added beside repositories, tags, keys and audit
// sort by the column the address names and say what to do when empty.
func TestConsoleTablesSortAndEmpty(t *testing.T) {
	e := start(t)
	for _, u := range []string{"aaa-user", "zzz-user"} {
		e.MustDo(t, "POST", "/coffer/v1/users", map[string]string{"name": u, "password": u + "-password-1"}, nil)
	}
	e.CreateVault(t, "alpha", nil)
	e.CreateVault(t, "omega", nil)
	var who struct{ ID string }
	e.MustDo(t, "GET", "/coffer/v1/whoami", nil, &who)
	e.SetPolicy(t, "alpha", who.ID, "list")
	c, _ := e.session(t, "admin", e.Inst.AdminPassword)
	order := func(page, first, second string) {
		t.Helper()
		i, j := strings.Index(page, first), strings.Index(page, second)
		if i < 0 || j < 0 || i > j {
			t.Errorf("%s (at %d) does not come before %s (at %d)", first, i, second, j)
		}
	}
	users := func(q string) string {
		p := e.get(t, c, "/console/access"+q, http.StatusOK)
		return p[strings.Index(p, `id="users"`):strings.Index(p, "Service principals")]
	}
	order(users(""), ">aaa-user<", ">zzz-user<")
	up := users("?users.sort=-name")
	order(up, ">zzz-user<", ">aaa-user<")
	if !strings.Contains(up, `aria-sort="descending"`) {
		t.Error("the sorted column does not say so (aria-sort)")
	}
	vaults := e.get(t, c, "/console/vaults?vaults.sort=-name", http.StatusOK)
	order(vaults, ">omega<", ">alpha<")
	if v := e.get(t, c, "/console/vault/deleted?name=alpha", http.StatusOK); !strings.Contains(v, `id="no-deleted"`) {
		t.Error("the deleted keys page has no empty state")
	}
	if v := e.get(t, c, "/console/vault/access?name=alpha", http.StatusOK); !strings.Contains(v, "No access policies") && !strings.Contains(v, `id="policies"`) {
		t.Error("the vault access page has no empty state for access policies")
	}
	if v := e.get(t, c, "/console/vault?name=alpha", http.StatusOK); !strings.Contains(v, `id="no-keys"`) {
		t.Error("the vault page has no empty state for keys")
	}
	if tok := e.get(t, c, "/console/access", http.StatusOK); !strings.Contains(tok, "No repository tokens yet") {
		t.Error("no empty state for repository tokens")
	}
}
