package load

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseMix(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Mix
		wantErr bool
	}{
		{in: "confirm=80,decline=10,oos=10", want: Mix{80, 10, 10}},
		{in: " oos=1 , confirm=3 ", want: Mix{3, 0, 1}},
		{in: "confirm=1", want: Mix{1, 0, 0}},
		{in: "decline=0,oos=2", want: Mix{0, 0, 2}},
		{in: "", wantErr: true},
		{in: "confirm=0", wantErr: true},
		{in: "confirm", wantErr: true},
		{in: "confirm=x", wantErr: true},
		{in: "confirm=-1", wantErr: true},
		{in: "refund=5", wantErr: true},
		{in: "confirm=1,confirm=2", wantErr: true},
		{in: "confirm=10001", wantErr: true},
	} {
		got, err := ParseMix(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseMix(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseMix(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// The cycle holds each class as often as its weight and spreads the rare
// ones out: no two declines in a row for 80/10/10.
func TestMixCycle(t *testing.T) {
	for _, m := range []Mix{{80, 10, 10}, {1, 1, 1}, {0, 3, 1}, {5, 0, 0}, {97, 2, 1}} {
		c := m.cycle()
		if len(c) != m.total() {
			t.Fatalf("%v: cycle of %d, want %d", m, len(c), m.total())
		}
		var n Mix
		for _, cl := range c {
			n[cl]++
		}
		if n != m {
			t.Errorf("%v: cycle counts %v", m, n)
		}
	}
	c := Mix{80, 10, 10}.cycle()
	for i := 1; i < len(c); i++ {
		if c[i] != Confirm && c[i] == c[i-1] {
			t.Errorf("80/10/10 cycle has %v twice in a row at %d: %v", c[i], i, c)
		}
	}
}

func TestScheduled(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		rate float64
		i    int
		want time.Duration
	}{
		{500, 0, 0},
		{500, 1, 2 * time.Millisecond},
		{500, 500, time.Second},
		{3, 2, 666666666},
		{0.5, 3, 6 * time.Second},
	} {
		if got := scheduled(start, tc.rate, tc.i).Sub(start); got != tc.want {
			t.Errorf("scheduled(rate %v, %d) = +%v, want +%v", tc.rate, tc.i, got, tc.want)
		}
	}
}

func TestPercentiles(t *testing.T) {
	h := newHistogram()
	if got := percentiles(h); got != (Percentiles{}) {
		t.Errorf("empty = %+v", got)
	}
	for us := int64(1); us <= 1000; us++ {
		_ = h.RecordValue(us * 1000) // 1ms … 1000ms
	}
	got := percentiles(h)
	near := func(got, want float64) bool { return got >= want*0.999 && got <= want*1.001 }
	if !near(got.P50, 500) || !near(got.P90, 900) || !near(got.P99, 990) || !near(got.P999, 999) || !near(got.Max, 1000) || got.Count != 1000 {
		t.Errorf("percentiles = %+v, want p50 500 p90 900 p99 990 p999 999 max 1000 (ms, within HDR's 3 digits)", got)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"p50":`, `"p90":`, `"p99":`, `"p999":`, `"max":`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("JSON %s lacks %s", b, k)
		}
	}
}
