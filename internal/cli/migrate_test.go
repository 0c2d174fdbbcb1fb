package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestMigrateCommand: coffer migrate on an empty data directory (SQLite) applies every
// part's schema and says so in JSON; a second run applies nothing; the table names the
// database.
func TestMigrateCommand(t *testing.T) {
	dir := t.TempDir()
	var rep struct {
		Metadata   string `json:"metadata"`
		Applied    int    `json:"applied"`
		Components []struct {
			Component     string
			Before, After int
		} `json:"components"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "migrate", "--data-dir", dir, "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Applied == 0 || len(rep.Components) < 6 || !strings.HasPrefix(rep.Metadata, "sqlite ") {
		t.Fatalf("first run: %+v", rep)
	}
	table := mustCLI(t, "migrate", "--data-dir", dir)
	if !strings.Contains(table, "COMPONENT") || !strings.Contains(table, "0 steps applied to sqlite") {
		t.Fatalf("second run:\n%s", table)
	}
}
