package load

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The CPU of a process named in the run folder's pid files is read from
// /proc, and grows when it works: this test process stands in for the
// order service.
func TestSampleCPU(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pids"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pids", "order.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := sampleCPU(dir)
	if _, ok := before["order"]; !ok {
		t.Fatalf("sample %v has no order", before)
	}
	if _, ok := before["nats"]; ok {
		t.Fatalf("sample %v has nats, which has no pid file", before)
	}
	// Burn CPU until the kernel's tick counts it (10ms per tick).
	deadline := time.Now().Add(5 * time.Second)
	var d map[string]float64
	for x := 0; time.Now().Before(deadline); x++ {
		for i := range 1_000_000 {
			x ^= i
		}
		d = cpuDelta(before, sampleCPU(dir))
		if d["order"] >= 50 {
			break
		}
	}
	if d["order"] < 50 {
		t.Fatalf("order CPU delta = %vms after burning CPU, want >= 50", d["order"])
	}
	total, names := stackCPU(d)
	if total != d["order"] || len(names) != 1 || names[0] != "order" {
		t.Errorf("stack CPU = %v over %v, want order's %v alone (the load is not the stack)", total, names, d["order"])
	}
	if rss := peakRSSByProcess(dir)["order"]; rss <= 0 {
		t.Errorf("peak RSS of order = %d KiB", rss)
	}
}
