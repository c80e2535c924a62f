package fault_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/fault"
)

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "jetsaga_faults_injected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == name {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestDisabledIsNil(t *testing.T) {
	in, err := fault.New(fault.Config{Seed: 4}, zap.NewNop(), prometheus.NewRegistry(), nil)
	if err != nil || in != nil {
		t.Fatalf("New(disabled) = %v, %v; want nil, nil", in, err)
	}
	// A nil injector injects nothing.
	if in.BeforeHandle(context.Background(), fault.Target{}) != nil || in.AfterCommit(fault.Target{}) || in.Duplicate(fault.Target{}) {
		t.Fatal("nil injector injected a fault")
	}
	in.BeforeCommit(fault.Target{})
	in.AfterPublish(fault.Target{})
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     fault.Config
		wantErr bool
	}{
		{"zero", fault.Config{}, false},
		{"all one", fault.Config{CrashAfterCommit: 1, CrashBeforeCommit: 1, DuplicatePublish: 1, Redeliver: 1, HandlerError: 1}, false},
		{"above one", fault.Config{Redeliver: 1.5}, true},
		{"negative", fault.Config{HandlerError: -0.1}, true},
		{"negative delay", fault.Config{Delay: -time.Second}, true},
		{"negative limit", fault.Config{Limit: -1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err != nil) != tc.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

// The same seed gives the same decisions; P is roughly honoured.
func TestSeededDice(t *testing.T) {
	run := func(seed int64) []bool {
		in, err := fault.New(fault.Config{Redeliver: 0.3, Seed: seed}, zap.NewNop(), nil, func(int) {})
		if err != nil {
			t.Fatal(err)
		}
		out := make([]bool, 2000)
		for i := range out {
			out[i] = in.AfterCommit(fault.Target{})
		}
		return out
	}
	a, b, c := run(7), run(7), run(8)
	same, hits := true, 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("decision %d differs for the same seed", i)
		}
		if a[i] != c[i] {
			same = false
		}
		if a[i] {
			hits++
		}
	}
	if same {
		t.Fatal("seeds 7 and 8 decided alike")
	}
	if hits < 500 || hits > 700 {
		t.Fatalf("p=0.3 fired %d of 2000", hits)
	}
}

func TestCrashExitsWithCode3AndCounts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   fault.Config
		fire  func(*fault.Injector)
		fault string
	}{
		{"after commit", fault.Config{CrashAfterCommit: 1}, func(in *fault.Injector) { in.AfterCommit(fault.Target{}) }, fault.CrashAfterCommit},
		{"before commit", fault.Config{CrashBeforeCommit: 1}, func(in *fault.Injector) { in.BeforeCommit(fault.Target{}) }, fault.CrashBeforeCommit},
		{"after publish", fault.Config{CrashAfterCommit: 1}, func(in *fault.Injector) { in.AfterPublish(fault.Target{}) }, fault.CrashAfterPublish},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			code := -1
			in, err := fault.New(tc.cfg, zap.NewNop(), reg, func(c int) { code = c })
			if err != nil {
				t.Fatal(err)
			}
			tc.fire(in)
			if code != fault.CrashExitCode {
				t.Fatalf("exit code %d, want %d", code, fault.CrashExitCode)
			}
			if got := counter(t, reg, tc.fault); got != 1 {
				t.Fatalf("jetsaga_faults_injected_total{fault=%q} = %v, want 1", tc.fault, got)
			}
		})
	}
}

func TestLimitAndHandlerError(t *testing.T) {
	reg := prometheus.NewRegistry()
	in, err := fault.New(fault.Config{HandlerError: 1, DuplicatePublish: 1, Limit: 2}, zap.NewNop(), reg, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	var errs, dups int
	for range 5 {
		if err := in.BeforeHandle(context.Background(), fault.Target{}); errors.Is(err, fault.ErrInjected) {
			errs++
		}
		if in.Duplicate(fault.Target{}) {
			dups++
		}
	}
	if errs != 2 || dups != 2 {
		t.Fatalf("with limit 2: %d handler errors, %d duplicates; want 2 and 2", errs, dups)
	}
	if got := counter(t, reg, fault.HandlerError); got != 2 {
		t.Fatalf("counter = %v, want 2", got)
	}
}

func TestDelayWaitsAndStopsOnCancel(t *testing.T) {
	in, err := fault.New(fault.Config{Delay: 50 * time.Millisecond}, zap.NewNop(), nil, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := in.BeforeHandle(context.Background(), fault.Target{}); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("waited %s, want ≥ 50ms", waited)
	}
	in, _ = fault.New(fault.Config{Delay: time.Hour}, zap.NewNop(), nil, func(int) {})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan struct{})
	go func() { _ = in.BeforeHandle(ctx, fault.Target{}); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("an hour's delay did not stop when its context was cancelled")
	}
}

// Every fault's label is there from the start — at zero, or at what earlier
// processes of the service injected (Config.Previous) — whether or not any
// fault is switched on.
func TestCounterStartsAtPrevious(t *testing.T) {
	for _, cfg := range []fault.Config{{}, {Redeliver: 0.5}} {
		reg := prometheus.NewRegistry()
		cfg.Previous = fault.Counts{fault.CrashAfterCommit: 3}
		if _, err := fault.New(cfg, zap.NewNop(), reg, func(int) {}); err != nil {
			t.Fatal(err)
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		labels := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				labels[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
		for _, name := range fault.Names() {
			want := 0.0
			if name == fault.CrashAfterCommit {
				want = 3
			}
			if got, ok := labels[name]; !ok || got != want {
				t.Errorf("enabled=%v: jetsaga_faults_injected_total{fault=%q} = %v (present %v), want %v", cfg.Enabled(), name, got, ok, want)
			}
		}
	}
}

func TestCountsFlagValue(t *testing.T) {
	var c fault.Counts
	if err := c.Set("redeliver=5, crash_after_commit=2,redeliver=1"); err != nil {
		t.Fatal(err)
	}
	if got := c.String(); got != "crash_after_commit=2,redeliver=6" {
		t.Errorf("String() = %q", got)
	}
	for _, bad := range []string{"nonsense=1", "redeliver", "redeliver=-1", "redeliver=x"} {
		if err := c.Set(bad); err == nil {
			t.Errorf("Set(%q) = nil, want an error", bad)
		}
	}
}
