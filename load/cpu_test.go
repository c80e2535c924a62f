package load

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
		d, _ = cpuDelta(before, sampleCPU(dir))
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
	// Sleeping puts a thread to sleep and wakes it: a context switch each.
	for range 20 {
		time.Sleep(time.Millisecond)
	}
	if n := switchDelta(before, sampleCPU(dir))["order"]; n < 20 {
		t.Errorf("order made %v context switches over 20 sleeps and the burn, want >= 20", n)
	}
}

// switchDelta counts as cpuDelta does: from the first sample to the last,
// a restarted process (another pid) from its start.
func TestSwitchDelta(t *testing.T) {
	start := cpuSample{"order": {pid: 10, switches: 100}, "nats": {pid: 12, switches: 50}, "gone": {pid: 13, switches: 7}}
	end := cpuSample{"order": {pid: 10, switches: 160}, "nats": {pid: 21, switches: 30}, "postgres": {pid: 22, switches: 40}}
	got := switchDelta(start, end)
	if want := map[string]float64{"order": 60, "nats": 30, "postgres": 40}; !maps.Equal(got, want) {
		t.Errorf("switch delta %v, want %v", got, want)
	}
}

// The cluster stack names a pid file per instance and node (order-1,
// order-2, nats-1, …): every one is sampled, the supervisor's and other
// files are not.
func TestSampleCPUCluster(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pids"), 0o755); err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid()) + "\n"
	for _, name := range []string{"order-1", "order-2", "nats-1", "nats-3", "readmodel-2", "supervisor", "provision", "order-x", "order-0"} {
		if err := os.WriteFile(filepath.Join(dir, "pids", name+".pid"), []byte(self), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A pid file of a process that is gone is left out.
	if err := os.WriteFile(filepath.Join(dir, "pids", "payment-1.pid"), []byte("999999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(maps.Keys(sampleCPU(dir)))
	if want := []string{"load", "nats-1", "nats-3", "order-1", "order-2", "readmodel-2"}; !slices.Equal(got, want) {
		t.Fatalf("sampled %q, want %q", got, want)
	}
	if got := missingProcs(got); !slices.Equal(got, []string{"inventory", "payment", "postgres"}) {
		t.Errorf("missing %q, want inventory, payment and postgres", got)
	}
}

// cpuDelta counts each process from the first sample to the last; one
// restarted in between (another pid) counts from its start, one gone by
// the end not at all, and notes say what is not counted. byKind sums the
// instances of a service.
func TestCPUDelta(t *testing.T) {
	start := cpuSample{
		"order-1": {pid: 10, ticks: 100}, "order-2": {pid: 11, ticks: 200}, "nats-1": {pid: 12, ticks: 50},
		"payment-1": {pid: 13, ticks: 70}, "load": {pid: 1, ticks: 5},
	}
	end := cpuSample{
		"order-1": {pid: 10, ticks: 150}, "order-2": {pid: 21, ticks: 30}, "nats-1": {pid: 12, ticks: 90},
		"inventory-1": {pid: 22, ticks: 40}, "load": {pid: 1, ticks: 9},
	}
	d, notes := cpuDelta(start, end)
	want := map[string]float64{"order-1": 500, "order-2": 300, "nats-1": 400, "inventory-1": 400, "load": 40}
	if !maps.Equal(d, want) {
		t.Errorf("delta %v, want %v", d, want)
	}
	if len(notes) != 2 || !strings.Contains(notes[0], "order-2 was restarted during the run (pid 11 at the start, 21 at the end)") ||
		!strings.Contains(notes[1], "payment-1 (pid 13) was gone by the end of the run") {
		t.Errorf("notes %q", notes)
	}
	sums, several := byKind(d)
	if !several || !maps.Equal(sums, map[string]float64{"order": 800, "nats": 400, "inventory": 400}) {
		t.Errorf("by kind %v (several %v), want order 800, nats 400, inventory 400", sums, several)
	}
	if total, names := stackCPU(d); total != 1600 || len(names) != 4 {
		t.Errorf("stack CPU %v over %v, want 1600 over four processes", total, names)
	}
	if _, several := byKind(map[string]float64{"order": 1, "nats": 2, "load": 3}); several {
		t.Error("the single-node stack has one process of each kind")
	}
}
