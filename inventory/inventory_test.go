package inventory

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jetsaga/jetsaga/internal/event"
)

func TestLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		items []event.Item
		want  []Line
	}{
		{"none", nil, []Line{}},
		{"one", []event.Item{{SKU: "a", Qty: 2, UnitPriceCents: 5}}, []Line{{"a", 2}}},
		{"sorted by sku", []event.Item{{SKU: "c", Qty: 1}, {SKU: "a", Qty: 2}, {SKU: "b", Qty: 3}},
			[]Line{{"a", 2}, {"b", 3}, {"c", 1}}},
		{"duplicates summed", []event.Item{{SKU: "b", Qty: 1, UnitPriceCents: 10}, {SKU: "a", Qty: 2}, {SKU: "b", Qty: 4, UnitPriceCents: 20}},
			[]Line{{"a", 2}, {"b", 5}}},
		{"byte order, not locale", []event.Item{{SKU: "a", Qty: 1}, {SKU: "B", Qty: 1}, {SKU: "_", Qty: 1}, {SKU: "-", Qty: 1}},
			[]Line{{"-", 1}, {"B", 1}, {"_", 1}, {"a", 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Lines(tt.items); !slices.Equal(got, tt.want) {
				t.Errorf("Lines = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTotal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		items []event.Item
		want  int64
	}{
		{"none", nil, 0},
		{"one", []event.Item{{SKU: "a", Qty: 3, UnitPriceCents: 199}}, 597},
		{"free items", []event.Item{{SKU: "a", Qty: 3}, {SKU: "b", Qty: 1, UnitPriceCents: 1}}, 1},
		{"duplicate skus at different prices", []event.Item{{SKU: "a", Qty: 1, UnitPriceCents: 100}, {SKU: "a", Qty: 2, UnitPriceCents: 50}}, 200},
		{"large", []event.Item{{SKU: "a", Qty: 1000, UnitPriceCents: 1 << 40}}, 1000 << 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Total(tt.items); got != tt.want {
				t.Errorf("Total = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestRejectReason(t *testing.T) {
	t.Parallel()
	if got := RejectReason(true); got != event.ReasonOutOfStock {
		t.Errorf("known sku: %q, want %q", got, event.ReasonOutOfStock)
	}
	if got := RejectReason(false); got != event.ReasonUnknownSKU {
		t.Errorf("unknown sku: %q, want %q", got, event.ReasonUnknownSKU)
	}
}

func TestTransitionTo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		t    Transition
		want Status
	}{
		{Release, Released},
		{Commit, Committed},
		{Transition(0), ""},
	}
	for _, tt := range tests {
		if got := tt.t.To(); got != tt.want {
			t.Errorf("Transition(%d).To() = %q, want %q", tt.t, got, tt.want)
		}
	}
}

// TestStockArithmetic walks stock through holds, releases, commits and
// stock adjustments and checks the invariant after every step.
func TestStockArithmetic(t *testing.T) {
	t.Parallel()
	type step struct {
		op     string // hold, release, commit, set
		n      int
		wantOK bool // for hold
		want   Stock
	}
	tests := []struct {
		name  string
		start Stock
		steps []step
	}{
		{
			name:  "hold then commit",
			start: Stock{SKU: "a", Available: 5, Initial: 5},
			steps: []step{
				{op: "hold", n: 2, wantOK: true, want: Stock{SKU: "a", Available: 3, Reserved: 2, Initial: 5}},
				{op: "commit", n: 2, want: Stock{SKU: "a", Available: 3, Sold: 2, Initial: 5}},
			},
		},
		{
			name:  "hold then release",
			start: Stock{SKU: "a", Available: 5, Initial: 5},
			steps: []step{
				{op: "hold", n: 5, wantOK: true, want: Stock{SKU: "a", Reserved: 5, Initial: 5}},
				{op: "release", n: 5, want: Stock{SKU: "a", Available: 5, Initial: 5}},
			},
		},
		{
			name:  "hold more than available changes nothing",
			start: Stock{SKU: "a", Available: 1, Initial: 1},
			steps: []step{
				{op: "hold", n: 2, wantOK: false, want: Stock{SKU: "a", Available: 1, Initial: 1}},
				{op: "hold", n: 0, wantOK: false, want: Stock{SKU: "a", Available: 1, Initial: 1}},
			},
		},
		{
			name:  "set available while stock is held and sold",
			start: Stock{SKU: "a", Available: 10, Initial: 10},
			steps: []step{
				{op: "hold", n: 3, wantOK: true, want: Stock{SKU: "a", Available: 7, Reserved: 3, Initial: 10}},
				{op: "hold", n: 2, wantOK: true, want: Stock{SKU: "a", Available: 5, Reserved: 5, Initial: 10}},
				{op: "commit", n: 2, want: Stock{SKU: "a", Available: 5, Reserved: 3, Sold: 2, Initial: 10}},
				{op: "set", n: 20, want: Stock{SKU: "a", Available: 20, Reserved: 3, Sold: 2, Initial: 10, Adjusted: 15}},
				{op: "set", n: 0, want: Stock{SKU: "a", Available: 0, Reserved: 3, Sold: 2, Initial: 10, Adjusted: -5}},
				{op: "release", n: 3, want: Stock{SKU: "a", Available: 3, Sold: 2, Initial: 10, Adjusted: -5}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := tt.start
			for i, st := range tt.steps {
				switch st.op {
				case "hold":
					var ok bool
					s, ok = s.Hold(st.n)
					if ok != st.wantOK {
						t.Fatalf("step %d: Hold(%d) ok = %v, want %v", i, st.n, ok, st.wantOK)
					}
				case "release":
					s = s.Apply(Release, st.n)
				case "commit":
					s = s.Apply(Commit, st.n)
				case "set":
					s = s.SetAvailable(st.n)
				}
				if s != st.want {
					t.Fatalf("step %d %s %d: %+v, want %+v", i, st.op, st.n, s, st.want)
				}
				if err := s.Check(); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
		})
	}
}

func TestStockCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		s       Stock
		wantErr bool
	}{
		{"balanced", Stock{SKU: "a", Available: 1, Reserved: 2, Sold: 3, Initial: 6}, false},
		{"empty", Stock{SKU: "a"}, false},
		{"initial too high", Stock{SKU: "a", Available: 1, Initial: 2}, true},
		{"initial too low", Stock{SKU: "a", Available: 1, Sold: 1, Initial: 1}, true},
		{"negative reserved", Stock{SKU: "a", Available: 2, Reserved: -1, Initial: 1}, true},
		{"adjusted up", Stock{SKU: "a", Available: 8, Sold: 2, Initial: 6, Adjusted: 4}, false},
		{"adjusted down", Stock{SKU: "a", Available: 1, Sold: 2, Initial: 6, Adjusted: -3}, false},
		{"adjustment missing", Stock{SKU: "a", Available: 8, Sold: 2, Initial: 6}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.s.Check()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Check() = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrUnbalanced) {
				t.Errorf("Check() = %v, want ErrUnbalanced", err)
			}
		})
	}
}

func TestValidSKU(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sku  string
		want bool
	}{
		{"sku-1", true},
		{"A_b-9", true},
		{strings.Repeat("x", 64), true},
		{"", false},
		{strings.Repeat("x", 65), false},
		{"a.b", false},
		{"a b", false},
		{"a*", false},
		{"é", false},
	}
	for _, tt := range tests {
		if got := ValidSKU(tt.sku); got != tt.want {
			t.Errorf("ValidSKU(%q) = %v, want %v", tt.sku, got, tt.want)
		}
	}
}

func TestParseSeedStock(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    map[string]int
		wantErr string // substring of the error; "" for none
	}{
		{in: "", want: map[string]int{}},
		{in: "   ", want: map[string]int{}},
		{in: "sku-1=100,sku-2=5", want: map[string]int{"sku-1": 100, "sku-2": 5}},
		{in: " sku-1 = 100 , sku-2=0 ", want: map[string]int{"sku-1": 100, "sku-2": 0}},
		{in: "a=1000000000", want: map[string]int{"a": MaxAvailable}},
		{in: "a", wantErr: `entry 1 "a": want sku=qty`},
		{in: "a=1,", wantErr: `entry 2 "": want sku=qty`},
		{in: "a=1,,b=2", wantErr: "entry 2"},
		{in: "=5", wantErr: "sku must be 1-64 chars"},
		{in: "a.b=5", wantErr: "sku must be 1-64 chars"},
		{in: "a=", wantErr: "qty must be an integer"},
		{in: "a=x", wantErr: "qty must be an integer"},
		{in: "a=1.5", wantErr: "qty must be an integer"},
		{in: "a=-1", wantErr: "qty must be 0-1000000000"},
		{in: "a=1000000001", wantErr: "qty must be 0-1000000000"},
		{in: "a=99999999999999999999", wantErr: "qty must be an integer"},
		{in: "a=1,b=2,a=3", wantErr: `entry 3 "a=3": sku a given twice`},
		{in: "a=1=2", wantErr: "qty must be an integer"},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			t.Parallel()
			got, err := ParseSeedStock(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSeedStock(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSeedStock(%q): %v", tt.in, err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("ParseSeedStock(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzParseSeedStock(f *testing.F) {
	for _, s := range []string{"", "sku-1=100,sku-2=5", "a=1,,b", "a=-1", " x = 3 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		seed, err := ParseSeedStock(s)
		if err != nil {
			return
		}
		if err := validSeed(seed); err != nil {
			t.Fatalf("ParseSeedStock(%q) accepted an invalid seed: %v", s, err)
		}
		// What it accepts it accepts again when written back.
		var parts []string
		for sku, n := range seed {
			parts = append(parts, sku+"="+strconv.Itoa(n))
		}
		again, err := ParseSeedStock(strings.Join(parts, ","))
		if err != nil || !maps.Equal(again, seed) {
			t.Fatalf("round trip of %v: %v, %v", seed, again, err)
		}
	})
}
