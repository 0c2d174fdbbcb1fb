package trustapi_test

import (
	"sort"
	"testing"
	"time"
)

// BenchmarkNotaryList times the Debian notary CLI's `notary list` against a running
// server (HTTPS, token auth, a fresh token each run as the CLI does), for a collection
// of 20 targets with a server-managed snapshot. It reports the median and the p90 of
// b.N runs; each run is a new process with a warm trust dir (it fetches timestamp.json
// and whatever changed).
func BenchmarkNotaryList(b *testing.B) {
	e := start(b, nil)
	n := newNotary(b, e, "admin", e.inst.AdminPassword)
	gun := e.gun("bench/app")
	f := writeFile(b, n.dir, "a.bin", "payload")
	n.must("init", gun)
	for i := range 20 {
		n.must("add", gun, "v"+string(rune('a'+i)), f)
	}
	n.must("publish", gun)
	n.must("key", "rotate", gun, "snapshot", "-r")
	n.must("list", gun)
	var times []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		n.must("list", gun)
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(times[len(times)*9/10].Microseconds())/1000, "p90-ms")
}
