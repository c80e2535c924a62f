package readmodel

import (
	"math"
	"slices"
	"sync"
)

// lagWindow is how many of the latest lags /stats summarises.
const lagWindow = 1000

// lagRing keeps the lags (in milliseconds) of the last lagWindow events this
// process projected. It is safe for concurrent use.
type lagRing struct {
	mu   sync.Mutex
	buf  []float64 // len grows to lagWindow, then wraps
	next int       // where the next sample goes once buf is full
}

// add records one lag.
func (r *lagRing) add(ms float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) < lagWindow {
		r.buf = append(r.buf, ms)
		return
	}
	r.buf[r.next] = ms
	r.next = (r.next + 1) % lagWindow
}

// LagSummary summarises the lags (in milliseconds) of the last 1,000 events
// a readmodel process projected.
type LagSummary struct {
	P50     float64 `json:"p50"`
	P99     float64 `json:"p99"`
	Samples int     `json:"samples"`
}

// summary returns the 50th and 99th percentiles (nearest rank) of the lags
// held, zero when there are none.
func (r *lagRing) summary() LagSummary {
	r.mu.Lock()
	s := slices.Clone(r.buf)
	r.mu.Unlock()
	slices.Sort(s)
	return LagSummary{P50: percentile(s, 0.50), P99: percentile(s, 0.99), Samples: len(s)}
}

// percentile returns the nearest-rank p-quantile of sorted, 0 if empty.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
