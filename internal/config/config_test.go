package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestPrecedenceFlagEnvFileDefault(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "coffer.yaml")
	if err := os.WriteFile(file, []byte("listen: 0.0.0.0:6000\ndata-dir: /from/file\nlog-level: warn\nhostname: [a.example, b.example]\ntoken-ttl: 5m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want func(Server) bool
	}{
		{"default when nothing set", nil, nil, func(s Server) bool { return s.Listen == "127.0.0.1:5000" && s.DataDir == "coffer-data" }},
		{"file over default", []string{"--config", file}, nil, func(s Server) bool {
			return s.Listen == "0.0.0.0:6000" && s.LogLevel == "warn" && len(s.Hostnames) == 2 && s.TokenTTL == 5*time.Minute
		}},
		{"env over file", []string{"--config", file}, map[string]string{"COFFER_LISTEN": "127.0.0.1:7000"}, func(s Server) bool {
			return s.Listen == "127.0.0.1:7000" && s.DataDir == "/from/file"
		}},
		{"flag over env", []string{"--config", file, "--listen", "127.0.0.1:8000"}, map[string]string{"COFFER_LISTEN": "127.0.0.1:7000"}, func(s Server) bool {
			return s.Listen == "127.0.0.1:8000"
		}},
		{"config file from env", nil, map[string]string{"COFFER_CONFIG": file}, func(s Server) bool { return s.DataDir == "/from/file" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := Defaults()
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			s.BindFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if err := Apply(fs, func(k string) string { return tc.env[k] }); err != nil {
				t.Fatal(err)
			}
			if !tc.want(s) {
				t.Fatalf("unexpected configuration: %+v", s)
			}
		})
	}
}

func TestUnknownFileKeyIsAnError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("lisen: x\n"), 0o600)
	s := Defaults()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	s.BindFlags(fs)
	fs.Parse([]string{"--config", file})
	if err := Apply(fs, func(string) string { return "" }); err == nil {
		t.Fatal("a misspelt key must be reported, not ignored")
	}
}

// TestLoadReadsTheAzureCredential: Load fills Server.Azure from the Azure SDK's variables,
// after the flags (which it applies like Apply).
func TestLoadReadsTheAzureCredential(t *testing.T) {
	env := map[string]string{
		"AZURE_TENANT_ID": "tenant-1", "AZURE_CLIENT_ID": "client-1", "AZURE_CLIENT_SECRET": "s3cret",
		"AZURE_AUTHORITY_HOST": "https://kv.example:5000/", "COFFER_LISTEN": "127.0.0.1:7000",
	}
	s := Defaults()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	s.BindFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := Load(&s, fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	want := Azure{TenantID: "tenant-1", ClientID: "client-1", ClientSecret: "s3cret", AuthorityHost: "https://kv.example:5000/"}
	if s.Azure != want || s.Listen != "127.0.0.1:7000" {
		t.Fatalf("Load gave Azure %+v and listen %s", s.Azure, s.Listen)
	}
	// With nothing set, the credential is empty (the managed-identity endpoint is used).
	s = Defaults()
	fs = pflag.NewFlagSet("serve", pflag.ContinueOnError)
	s.BindFlags(fs)
	if err := Load(&s, fs, func(string) string { return "" }); err != nil || s.Azure != (Azure{}) {
		t.Fatalf("Load with an empty environment: %+v, %v", s.Azure, err)
	}
}

// TestBlobStoreSettings: the S3 blob store's settings come from the YAML file and the
// environment like every other flag.
func TestBlobStoreSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "coffer.yaml")
	yaml := "blob-store: s3://team-bucket/coffer\ns3-endpoint: https://s3.example.com\ns3-path-style: true\ns3-secret-access-key-file: /run/secrets/s3\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := Defaults()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	s.BindFlags(fs)
	if err := fs.Parse([]string{"--config", file}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"COFFER_S3_REGION": "eu-west-1", "COFFER_S3_ACCESS_KEY_ID": "AKIAEXAMPLE"}
	if err := Apply(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	want := BlobStore{URL: "s3://team-bucket/coffer", S3Endpoint: "https://s3.example.com", S3Region: "eu-west-1",
		S3PathStyle: true, S3AccessKeyID: "AKIAEXAMPLE", S3SecretAccessKeyFile: "/run/secrets/s3"}
	if s.BlobStore != want {
		t.Fatalf("BlobStore = %+v, want %+v", s.BlobStore, want)
	}
}

// TestKMSPluginSockets: --kms-plugin-socket entries pair a socket with a cluster (its own
// =CLUSTER, or --kms-cluster), from flags and from a YAML list alike; a bad entry is refused
// with what to write instead.
func TestKMSPluginSockets(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("kms-plugin-socket:\n  - unix:///run/kms/eu.sock=prod-eu\n  - unix:///run/kms/us.sock\nkms-cluster: prod-us\n"), 0o600)
	s := Defaults()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	s.BindFlags(fs)
	if err := fs.Parse([]string{"--config", file}); err != nil {
		t.Fatal(err)
	}
	if err := Apply(fs, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	got, err := s.KMSPlugin.Plugins()
	if err != nil || len(got) != 2 || got[0] != (KMSPluginSocket{"/run/kms/eu.sock", "prod-eu"}) || got[1] != (KMSPluginSocket{"/run/kms/us.sock", "prod-us"}) {
		t.Fatalf("from the YAML list: %+v %v", got, err)
	}
	for _, tc := range []struct {
		k    KMSPlugin
		want string
	}{
		{KMSPlugin{Cluster: "c"}, "needs --kms-plugin-socket"},
		{KMSPlugin{Sockets: []string{"unix:///a.sock"}}, "names no cluster"},
		{KMSPlugin{Sockets: []string{"tcp://127.0.0.1:9"}, Cluster: "c"}, "want unix:///path"},
		{KMSPlugin{Sockets: []string{"unix://relative.sock"}, Cluster: "c"}, "must be absolute"},
		{KMSPlugin{Sockets: []string{"unix:///a.sock=x", "/a.sock=y"}}, "given twice"},
		{KMSPlugin{Sockets: []string{"unix:///a.sock", "unix:///b.sock"}, Cluster: "c"}, "served on two sockets"},
	} {
		if _, err := tc.k.Plugins(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.k, err, tc.want)
		}
	}
	if got, err := (KMSPlugin{}).Plugins(); err != nil || got != nil {
		t.Fatalf("no socket: %v %v, want nothing", got, err)
	}
}
