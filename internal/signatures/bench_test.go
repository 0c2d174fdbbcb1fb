package signatures_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/sigstore/sigstore-go/pkg/sign"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// fetch GETs a manifest b.N times, as the puller.
func fetch(b *testing.B, r *remote.Repository, ref string) {
	b.Helper()
	ctx := context.Background()
	if _, rc, err := r.FetchReference(ctx, ref); err != nil { // warm the token and the cache
		b.Fatal(err)
	} else {
		rc.Close()
	}
	b.ResetTimer()
	for b.Loop() {
		_, rc, err := r.FetchReference(ctx, ref)
		if err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}

// BenchmarkManifestGet compares a manifest GET over HTTPS under enforce, with the
// verification cache warm, to the same GET with the policy off.
func BenchmarkManifestGet(b *testing.B) {
	e := startEnv(b)
	pw := e.user("puller", "AcrPull", "/registry")
	ca := newCA(b, "bench CA")
	e.addAnchor(wire.SignatureAnchor{Name: "ca", Kind: wire.AnchorNotation, Certificates: ca.pem()})
	r := e.repo("bench/app")
	img := e.pushImage(r, "v1")
	notationSign(b, r, img, ca)
	pr := e.repoAs("bench/app", "puller", pw)
	b.Run("off", func(b *testing.B) {
		e.setPolicy(wire.SignaturePolicy{Notation: notationPolicy("ca"), Repositories: []wire.SignatureRule{{Scope: "bench/*", Mode: wire.SignatureModeOff}}})
		fetch(b, pr, "v1")
	})
	b.Run("enforce-warm", func(b *testing.B) {
		e.setPolicy(wire.SignaturePolicy{Notation: notationPolicy("ca"), Repositories: []wire.SignatureRule{{Scope: "bench/*", Mode: wire.SignatureModeEnforce}}})
		fetch(b, pr, "v1")
	})
}

// BenchmarkColdVerify reports the server's own measure of one signature verification
// on a cache miss (coffer_signature_verification_seconds), per kind: each iteration
// changes the policy (a new version: nothing cached) and pulls once.
func BenchmarkColdVerify(b *testing.B) {
	e := startEnv(b)
	pw := e.user("puller", "AcrPull", "/registry")
	ca := newCA(b, "bench CA")
	k := newCosignKey(b)
	kp, _ := sign.NewEphemeralKeypair(nil)
	kpPub, _ := kp.GetPublicKeyPem()
	e.addAnchor(wire.SignatureAnchor{Name: "ca", Kind: wire.AnchorNotation, Certificates: ca.pem()})
	e.addAnchor(wire.SignatureAnchor{Name: "key", Kind: wire.AnchorCosign, PublicKey: k.pub})
	e.addAnchor(wire.SignatureAnchor{Name: "bundle-key", Kind: wire.AnchorCosign, PublicKey: kpPub})
	for _, kind := range []string{wire.SignatureNotation, wire.SignatureCosign, wire.SignatureCosignOCI, wire.SignatureCosignBundle} {
		b.Run(kind, func(b *testing.B) {
			name := "cold/" + kind
			r, pr := e.repo(name), e.repoAs(name, "puller", pw)
			img := e.pushImage(r, "v1")
			switch kind {
			case wire.SignatureNotation:
				notationSign(b, r, img, ca)
			case wire.SignatureCosign:
				cosignLegacy(b, r, k, img, img)
			case wire.SignatureCosignOCI:
				cosignOCI(b, r, k, img, img)
			case wire.SignatureCosignBundle:
				cosignBundle(b, r, kp, img, img)
			}
			series := fmt.Sprintf(`coffer_signature_verification_seconds_%%s{kind="%s"}`, kind)
			sum0, n0 := metricFloat(e, fmt.Sprintf(series, "sum")), metricFloat(e, fmt.Sprintf(series, "count"))
			i := 0
			for b.Loop() {
				i++
				e.setPolicy(wire.SignaturePolicy{Notation: notationPolicy("ca"), Repositories: []wire.SignatureRule{
					{Scope: name, Mode: wire.SignatureModeEnforce, Kinds: []string{kind}}, {Scope: fmt.Sprintf("unused%d", i), Mode: "off"}}})
				if err := pull(pr, "v1"); err != nil {
					b.Fatal(err)
				}
			}
			sum, n := metricFloat(e, fmt.Sprintf(series, "sum"))-sum0, metricFloat(e, fmt.Sprintf(series, "count"))-n0
			if n > 0 {
				b.ReportMetric(sum/n*1e6, "µs/verify")
			}
		})
	}
}

func metricFloat(e *env, series string) float64 {
	v := e.metric(series)
	f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
	return f
}
