package main

import (
	"slices"
	"time"
)

// result is what one phase measured.
type result struct {
	// name says what ran (baseline or pipeline); load how it was driven.
	name, load string
	// window is the measured time (warm-up excluded).
	window time.Duration
	// lat holds the latency of every turn completed within the window.
	lat []time.Duration
	// errors counts failed turns; firstErr is the first.
	errors   int
	firstErr error
	// cpu is the CPU used within the window.
	cpu cpuUse
}

// rate is the turns completed per second within the window.
func (r result) rate() float64 {
	if r.window <= 0 {
		return 0
	}
	return float64(len(r.lat)) / r.window.Seconds()
}

// percentile returns the q-quantile (0 < q ≤ 1) of sorted by the
// nearest-rank method, or 0 when it is empty.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// latencies are the percentiles the report shows.
type latencies struct{ p50, p90, p99, max time.Duration }

func (r result) latencies() latencies {
	s := slices.Clone(r.lat)
	slices.Sort(s)
	return latencies{percentile(s, 0.50), percentile(s, 0.90), percentile(s, 0.99), percentile(s, 1)}
}

// perTurn is d spread over the turns of the window, in milliseconds.
func (r result) perTurn(d time.Duration) float64 {
	if len(r.lat) == 0 {
		return 0
	}
	return float64(d) / float64(time.Millisecond) / float64(len(r.lat))
}

// busy is the share of the machine's CPU time in use within the window.
func (r result) busy() float64 {
	if r.cpu.total <= 0 {
		return 0
	}
	return 100 * float64(r.cpu.busy) / float64(r.cpu.total)
}
