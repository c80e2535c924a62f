package payment

import (
	"fmt"
	"math"
	"testing"
)

func TestGatewayCharge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		g      Gateway
		amount int64
		want   Decision
	}{
		{"defaults approve", Gateway{}, 1_000_000, Decision{Status: Completed}},
		{"zero amount", Gateway{}, 0, Decision{Status: Completed}},
		{"below the limit", Gateway{DeclineOverCents: 1000}, 999, Decision{Status: Completed}},
		{"at the limit", Gateway{DeclineOverCents: 1000}, 1000, Decision{Status: Completed}},
		{"over the limit", Gateway{DeclineOverCents: 1000}, 1001, Decision{Status: Failed, Reason: ReasonDeclinedOverLimit}},
		{"limit 0 is off", Gateway{DeclineOverCents: 0}, math.MaxInt64, Decision{Status: Completed}},
		{"rate 1 declines all", Gateway{DeclineRate: 1}, 5, Decision{Status: Failed, Reason: ReasonDeclinedRandom}},
		{"rate 0 declines none", Gateway{DeclineRate: 0, Seed: 7}, 5, Decision{Status: Completed}},
		{"limit checked before rate", Gateway{DeclineOverCents: 10, DeclineRate: 1}, 11, Decision{Status: Failed, Reason: ReasonDeclinedOverLimit}},
		{"rate applies under the limit", Gateway{DeclineOverCents: 10, DeclineRate: 1}, 10, Decision{Status: Failed, Reason: ReasonDeclinedRandom}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.g.Charge("o1", tt.amount); got != tt.want {
				t.Errorf("Charge(o1, %d) = %+v, want %+v", tt.amount, got, tt.want)
			}
		})
	}
}

// TestGatewayRate: over 10,000 order ids the share of random declines is
// close to the rate, for several rates and seeds.
func TestGatewayRate(t *testing.T) {
	t.Parallel()
	const n = 10_000
	for _, rate := range []float64{0, 0.01, 0.1, 0.25, 0.5, 0.9, 1} {
		for _, seed := range []int64{0, 1, -42} {
			t.Run(fmt.Sprintf("rate %v seed %d", rate, seed), func(t *testing.T) {
				t.Parallel()
				g := Gateway{DeclineRate: rate, Seed: seed}
				declined := 0
				for i := range n {
					if g.Charge(fmt.Sprintf("order-%d", i), 100).Status == Failed {
						declined++
					}
				}
				// Six standard deviations of a binomial(n, rate), at least 1.
				tol := math.Max(6*math.Sqrt(n*rate*(1-rate)), 1)
				if got := float64(declined); math.Abs(got-n*rate) > tol {
					t.Errorf("declined %d of %d, want %v ± %.0f", declined, n, n*rate, tol)
				}
			})
		}
	}
}

func TestGatewayDeterministic(t *testing.T) {
	t.Parallel()
	g := Gateway{DeclineRate: 0.5, Seed: 99}
	other := Gateway{DeclineRate: 0.5, Seed: 100}
	differ := 0
	for i := range 1000 {
		id := fmt.Sprintf("o-%d", i)
		first := g.Charge(id, 100)
		for range 3 {
			if again := g.Charge(id, 100); again != first {
				t.Fatalf("Charge(%s) = %+v then %+v", id, first, again)
			}
		}
		if other.Charge(id, 100) != first {
			differ++
		}
	}
	// Another seed makes other decisions (about half of them, by chance).
	if differ < 300 || differ > 700 {
		t.Errorf("seeds 99 and 100 differ on %d of 1000 orders, want about 500", differ)
	}
}

func TestRoll(t *testing.T) {
	t.Parallel()
	// Pinned values (SHA-256 of the seed's 8 big-endian bytes and the id, its
	// first 53 bits over 2^53): a change to Roll would change the decisions
	// of every rerun with a given seed.
	pinned := []struct {
		seed int64
		id   string
		want float64
	}{
		{0, "o1", 0.6615632447528572},
		{1, "o1", 0.7039618295792228},
		{0, "o2", 0.06869013571026539},
		{-1, "0190a5b2-0000-7000-8000-000000000000", 0.8338894674999406},
	}
	for _, p := range pinned {
		if got := Roll(p.seed, p.id); got != p.want {
			t.Errorf("Roll(%d, %q) = %v, want %v", p.seed, p.id, got, p.want)
		}
	}
	var sum float64
	const n = 10_000
	for i := range n {
		r := Roll(5, fmt.Sprint(i))
		if r < 0 || r >= 1 {
			t.Fatalf("Roll = %v, not in [0, 1)", r)
		}
		sum += r
	}
	if mean := sum / n; math.Abs(mean-0.5) > 0.02 {
		t.Errorf("mean of %d rolls = %v, want about 0.5", n, mean)
	}
}

func TestGatewayValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		g       Gateway
		wantErr bool
	}{
		{"zero", Gateway{}, false},
		{"full", Gateway{DeclineOverCents: 100, DeclineRate: 1, Seed: -3}, false},
		{"negative limit", Gateway{DeclineOverCents: -1}, true},
		{"negative rate", Gateway{DeclineRate: -0.1}, true},
		{"rate over 1", Gateway{DeclineRate: 1.01}, true},
		{"NaN rate", Gateway{DeclineRate: math.NaN()}, true},
	}
	for _, tt := range tests {
		if err := tt.g.Validate(); (err != nil) != tt.wantErr {
			t.Errorf("%s: Validate() = %v, wantErr %v", tt.name, err, tt.wantErr)
		}
	}
}
