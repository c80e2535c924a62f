package readmodel

import (
	"sync"
	"testing"
)

func TestPercentile(t *testing.T) {
	t.Parallel()

	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1)
	}
	tests := []struct {
		name   string
		sorted []float64
		p      float64
		want   float64
	}{
		{"empty", nil, 0.5, 0},
		{"one", []float64{3}, 0.99, 3},
		{"p50 of two", []float64{1, 2}, 0.5, 1},
		{"p50 of 100", hundred, 0.5, 50},
		{"p99 of 100", hundred, 0.99, 99},
		{"p100", hundred, 1, 100},
		{"p0", hundred, 0, 1},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: percentile(%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestLagRingKeepsTheLatest(t *testing.T) {
	t.Parallel()

	var r lagRing
	if got := r.summary(); got != (LagSummary{}) {
		t.Fatalf("empty ring: %+v", got)
	}
	// 1..1500: the ring keeps 501..1500.
	for i := 1; i <= 1500; i++ {
		r.add(float64(i))
	}
	want := LagSummary{P50: 1000, P99: 1490, Samples: lagWindow}
	if got := r.summary(); got != want {
		t.Fatalf("summary = %+v, want %+v", got, want)
	}
}

func TestLagRingConcurrent(t *testing.T) {
	t.Parallel()

	var r lagRing
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				r.add(1)
				_ = r.summary()
			}
		})
	}
	wg.Wait()
	if got := r.summary(); got.Samples != lagWindow || got.P50 != 1 {
		t.Fatalf("summary = %+v", got)
	}
}
