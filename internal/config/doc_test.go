package config

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestConfigurationDocListsEveryFlag keeps docs/configuration.md in step with the flag set:
// a setting added without documentation fails here, with the row to add.
func TestConfigurationDocListsEveryFlag(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	s := Defaults()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	s.BindFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(string(doc), "| `--"+f.Name+"` (`"+EnvName(f.Name)+"`) |") {
			t.Errorf("docs/configuration.md lacks --%s; add:\n%s", f.Name, docRow(f))
		}
	})
}

// TestConfigurationDocListsEveryEnvironmentVariable: the settings that are not flags (the
// Azure credential Load reads, and what the Azure SDK reads itself) are documented too.
func TestConfigurationDocListsEveryEnvironmentVariable(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append(AzureEnv(), SDKEnv()...) {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/configuration.md lacks the environment variable %s", name)
		}
	}
}

func docRow(f *pflag.Flag) string {
	def := f.DefValue
	if def == "" || def == "[]" {
		def = "—"
	} else {
		def = "`" + def + "`"
	}
	return fmt.Sprintf("| `--%s` (`%s`) | %s | %s |", f.Name, EnvName(f.Name), def, f.Usage)
}
