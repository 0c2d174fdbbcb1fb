package signatures_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/sign"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// BenchmarkManifestGet compares a manifest GET over HTTPS under enforce, with the
// verification cache warm, to the same GET of an identical signed image in a repository
// whose policy is off. The two are interleaved in each iteration, so that the load of a
// shared machine falls on both alike; it reports each one's time and the ratio off/enforce.
func BenchmarkManifestGet(b *testing.B) {
	e := startEnv(b)
	pw := e.user("puller", "AcrPull", "/registry")
	ca := newCA(b, "bench CA")
	e.addAnchor(wire.SignatureAnchor{Name: "ca", Kind: wire.AnchorNotation, Certificates: ca.pem()})
	e.setPolicy(wire.SignaturePolicy{Notation: notationPolicy("ca"), Repositories: []wire.SignatureRule{
		{Scope: "bench/off", Mode: wire.SignatureModeOff}, {Scope: "bench/enforce", Mode: wire.SignatureModeEnforce}}})
	var repos []*remote.Repository
	for _, name := range []string{"bench/off", "bench/enforce"} {
		r := e.repo(name)
		notationSign(b, r, e.pushImage(r, "v1"), ca)
		pr := e.repoAs(name, "puller", pw)
		if err := pull(pr, "v1"); err != nil { // the token, the connection and the cache warm
			b.Fatal(err)
		}
		repos = append(repos, pr)
	}
	ctx := context.Background()
	var spent [2]time.Duration
	for b.Loop() {
		for i, r := range repos {
			start := time.Now()
			_, rc, err := r.FetchReference(ctx, "v1")
			if err != nil {
				b.Fatal(err)
			}
			rc.Close()
			spent[i] += time.Since(start)
		}
	}
	b.ReportMetric(float64(spent[0].Nanoseconds())/float64(b.N), "off-ns/get")
	b.ReportMetric(float64(spent[1].Nanoseconds())/float64(b.N), "enforce-ns/get")
	b.ReportMetric(float64(spent[0])/float64(spent[1]), "off/enforce")
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
