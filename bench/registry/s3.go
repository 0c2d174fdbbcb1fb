package main

import (
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// startVersitygw runs versitygw (a real S3 gateway over a directory) with one bucket and
// returns the --blob-store URL and flags of a coffer that stores there.
func startVersitygw(dir, bin string) (url string, flags []string, stop func()) {
	const access, secret = "coffer-bench", "coffer-bench-secret-0123456789"
	must(os.MkdirAll(filepath.Join(dir, "root", "bench"), 0o700)) // bucket "bench"
	secretFile := filepath.Join(dir, "s3-secret")
	must(os.WriteFile(secretFile, []byte(secret), 0o600))
	addr := freeAddr()
	stop = child(dir, bin, []string{"--port", addr, "--access", access, "--secret", secret, "posix", filepath.Join(dir, "root")})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			fail("versitygw did not start: see " + filepath.Join(dir, "log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "s3://bench/registry", []string{
		"--s3-endpoint", "http://" + addr, "--s3-region", "us-east-1", "--s3-path-style",
		"--s3-access-key-id", access, "--s3-secret-access-key-file", secretFile,
	}, stop
}
