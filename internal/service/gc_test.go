package service

import (
	"math"
	"runtime/debug"
	"testing"
)

// Not parallel: it changes the process's collector and puts it back.
func TestTuneGC(t *testing.T) {
	percent := debug.SetGCPercent(100)
	limit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(percent); debug.SetMemoryLimit(limit) })

	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if p, l := tuneGC(getenv); p != defaultGCPercent || l != defaultMemoryLimit {
		t.Errorf("tuneGC with nothing set = %d, %d; want %d, %d", p, l, defaultGCPercent, defaultMemoryLimit)
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GC percent = %d, want %d", got, defaultGCPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != defaultMemoryLimit {
		t.Errorf("memory limit = %d, want %d", got, defaultMemoryLimit)
	}

	debug.SetMemoryLimit(math.MaxInt64)
	env["GOGC"], env["GOMEMLIMIT"] = "50", "1GiB"
	if p, l := tuneGC(getenv); p != 0 || l != 0 {
		t.Errorf("tuneGC with GOGC and GOMEMLIMIT set = %d, %d; want 0, 0 (left alone)", p, l)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent = %d, want 100 (left alone)", got)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("memory limit = %d, want it left alone", got)
	}
}
