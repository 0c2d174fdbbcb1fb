package tlsca

import (
	"crypto/x509"
	"os"
	"testing"
	"time"
)

func TestEnsureIssuesVerifiableCertAndReissuesOnNewName(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	cert, err := Ensure(dir, []string{"localhost", "127.0.0.1", "::1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(Files{dir}.CACert())
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem is not a PEM certificate")
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("certificate does not verify for %s: %v", name, err)
		}
	}
	if crt, _ := os.ReadFile(Files{dir}.CACertForClients()); string(crt) != string(caPEM) {
		t.Error("ca.crt (for docker certs.d and skopeo --cert-dir) differs from ca.pem")
	}
	if st, _ := os.Stat(Files{dir}.CAKey()); st.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode = %v, want 0600", st.Mode().Perm())
	}
	// Same names: same certificate. New name: re-issued by the same CA.
	again, _ := Ensure(dir, []string{"localhost", "127.0.0.1", "::1"}, now)
	if string(again.Certificate[0]) != string(cert.Certificate[0]) {
		t.Error("certificate re-issued although names did not change")
	}
	more, _ := Ensure(dir, []string{"localhost", "registry.example"}, now)
	leaf2, _ := x509.ParseCertificate(more.Certificate[0])
	if _, err := leaf2.Verify(x509.VerifyOptions{DNSName: "registry.example", Roots: pool}); err != nil {
		t.Errorf("new name not covered by the same CA: %v", err)
	}
}
