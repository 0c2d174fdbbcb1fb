// Package tlsca runs the local certificate authority that `coffer serve` uses when the
// operator brings no certificate: a CA created on first start (<data-dir>/tls/ca.pem) and a
// server certificate it issues, re-issued whenever the wanted names change or it nears expiry.
package tlsca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/cofferhq/coffer/internal/durable"
)

// Files names the PEM files of the local CA under a directory.
type Files struct{ Dir string }

func (f Files) CACert() string { return filepath.Join(f.Dir, "ca.pem") }

// CACertForClients is the same certificate named the way docker's certs.d and
// containers/image (skopeo, podman, buildah --cert-dir) look for a CA: *.crt.
func (f Files) CACertForClients() string { return filepath.Join(f.Dir, "ca.crt") }

func (f Files) CAKey() string      { return filepath.Join(f.Dir, "ca-key.pem") }
func (f Files) ServerCert() string { return filepath.Join(f.Dir, "server.pem") }
func (f Files) ServerKey() string  { return filepath.Join(f.Dir, "server-key.pem") }

// Ensure creates the CA if missing and returns a server certificate valid for names (DNS
// names and IP addresses), issuing a new one when the existing one does not cover them
// or expires within 30 days.
func Ensure(dir string, names []string, now time.Time) (tls.Certificate, error) {
	f := Files{Dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("create TLS directory: %w", err)
	}
	caCert, caKey, err := loadOrCreateCA(f, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := ensureClientCopy(f); err != nil {
		return tls.Certificate{}, err
	}
	names = normalize(names)
	if cert, err := tls.LoadX509KeyPair(f.ServerCert(), f.ServerKey()); err == nil {
		leaf, perr := x509.ParseCertificate(cert.Certificate[0])
		if perr == nil && covers(leaf, names) && leaf.NotAfter.After(now.Add(30*24*time.Hour)) &&
			leaf.CheckSignatureFrom(caCert) == nil {
			cert.Leaf = leaf
			return cert, nil
		}
	}
	return issueServer(f, caCert, caKey, names, now)
}

func loadOrCreateCA(f Files, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	certPEM, errC := os.ReadFile(f.CACert())
	keyPEM, errK := os.ReadFile(f.CAKey())
	if errC == nil && errK == nil {
		cert, key, err := parsePair(certPEM, keyPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("local CA in %s: %w", f.Dir, err)
		}
		return cert, key, nil
	}
	if !errors.Is(errC, os.ErrNotExist) && errC != nil {
		return nil, nil, errC
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Coffer local CA", Organization: []string{"Coffer"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePair(f.CACert(), f.CAKey(), der, key); err != nil {
		return nil, nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key, nil
}

func ensureClientCopy(f Files) error {
	want, err := os.ReadFile(f.CACert())
	if err != nil {
		return err
	}
	if have, err := os.ReadFile(f.CACertForClients()); err == nil && string(have) == string(want) {
		return nil
	}
	return durable.WriteFile(f.CACertForClients(), want, 0o644)
}

func issueServer(f Files, ca *x509.Certificate, caKey crypto.Signer, names []string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"Coffer"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writePair(f.ServerCert(), f.ServerKey(), der, key); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(f.ServerCert(), f.ServerKey())
}

func covers(c *x509.Certificate, names []string) bool {
	have := map[string]bool{}
	for _, d := range c.DNSNames {
		have[d] = true
	}
	for _, ip := range c.IPAddresses {
		have[ip.String()] = true
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			n = ip.String()
		}
		if !have[n] {
			return false
		}
	}
	return true
}

func normalize(names []string) []string {
	out := []string{}
	for _, n := range names {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		out = []string{"localhost"}
	}
	first := out[0]
	rest := out[1:]
	sort.Strings(rest)
	return append([]string{first}, rest...)
}

func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("CA key cannot sign")
	}
	return cert, signer, nil
}

func writePair(certPath, keyPath string, der []byte, key crypto.PrivateKey) error {
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		return err
	}
	return durable.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
