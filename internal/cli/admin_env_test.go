package cli_test

import (
	"testing"

	"github.com/cofferhq/coffer/internal/servertest"
)

// asAdmin points the CLI run by the test at inst as its administrator: a config dir of the
// test's own, the server's URL and CA, and the admin's credentials in the environment.
func asAdmin(t *testing.T, inst *servertest.Instance) {
	t.Helper()
	t.Setenv("COFFER_CONFIG_DIR", t.TempDir())
	t.Setenv("COFFER_SERVER", inst.URL)
	t.Setenv("COFFER_CA_FILE", inst.CAFile)
	t.Setenv("COFFER_USERNAME", "admin")
	t.Setenv("COFFER_PASSWORD", inst.AdminPassword)
}
