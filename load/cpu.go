package load

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat's times:
// 100 on every Linux architecture Go runs on.
const clockTicks = 100

// The kinds of process of the stack whose CPU the load measures: the four
// services and nats-server, found through the run folder's pid files, and
// Postgres, through its postmaster's. On the single-node stack (make up) a
// pid file is named for its kind: pids/order.pid, pids/nats.pid. The
// cluster stack (make cluster-up) runs several of each and names each
// process: pids/order-1.pid, pids/order-2.pid, …, pids/nats-1.pid to
// nats-3.pid (stack.Config.InstanceName, stack.NodeName); every one counts.
var (
	stackKinds = []string{"order", "inventory", "payment", "readmodel", "nats"}
	postgres   = "postgres"
)

// kindOf is the kind of a process of the stack named name ("order" for
// "order" and "order-2"); ok is false for anything else in the pid folder
// (the supervisor).
func kindOf(name string) (kind string, ok bool) {
	base, n, numbered := strings.Cut(name, "-")
	if numbered {
		if i, err := strconv.Atoi(n); err != nil || i < 1 {
			return "", false
		}
	}
	if base == postgres && !numbered || slices.Contains(stackKinds, base) {
		return base, true
	}
	return "", false
}

// procCPU is the CPU time one process had used at one moment, in clock
// ticks, the context switches its threads had made, and which process it
// was.
type procCPU struct {
	pid      int
	ticks    int64
	switches int64
}

// cpuSample is the CPU time of each process of the stack at one moment, by
// process name.
type cpuSample map[string]procCPU

// procTimes reads utime+stime and, for reaped children, cutime+cstime of a
// process.
func procTimes(pid int) (self, children int64, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3, the state
	if len(f) < 15 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	num := func(field int) int64 { n, _ := strconv.ParseInt(f[field-3], 10, 64); return n }
	return num(14) + num(15), num(16) + num(17), int(num(4)), nil
}

// contextSwitches is the voluntary and involuntary context switches of
// every thread of a process so far (/proc/<pid>/task/*/status), 0 when
// unknown. Threads that ended took theirs with them.
func contextSwitches(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:")
			if !ok {
				v, ok = strings.CutPrefix(line, "nonvoluntary_ctxt_switches:")
			}
			if ok {
				c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n
}

// peakRSS is VmHWM of a process in KiB, 0 when unknown.
func peakRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// stackPids finds the stack's processes from the run folder: the pid files
// of the services' processes and nats-servers (every instance and node),
// and the postmaster's pid file in the Postgres data folder. Postgres also
// counts every live child of the postmaster. Processes that are not running
// are left out.
func stackPids(runDir string) (procs map[string]int, pgChildren []int) {
	procs = map[string]int{}
	files, _ := filepath.Glob(filepath.Join(runDir, "pids", "*.pid"))
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".pid")
		if kind, ok := kindOf(name); !ok || kind == postgres {
			continue
		}
		if pid := pidFromFile(f); pid > 0 && alive(pid) {
			procs[name] = pid
		}
	}
	if pid := pidFromFile(filepath.Join(runDir, "pg", "postmaster.pid")); pid > 0 && alive(pid) {
		procs[postgres] = pid
		pgChildren = children(pid)
	}
	return procs, pgChildren
}

func pidFromFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

func alive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, _, ppid, err := procTimes(p); err == nil && ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

// sampleCPU reads the CPU time of the stack's processes. Postgres is the
// postmaster's own time, plus its reaped children's (cutime+cstime: backends
// that exited), plus every live child's: so a backend that exits during the
// run is still counted, through the postmaster's cutime, once it is reaped.
// Context switches are every thread's, and for Postgres the postmaster's and
// its live children's (a backend that exits takes its count with it). The
// load's own process is "load".
func sampleCPU(runDir string) cpuSample {
	s := cpuSample{}
	if runDir == "" {
		return s
	}
	procs, pgChildren := stackPids(runDir)
	for name, pid := range procs {
		self, reaped, _, err := procTimes(pid)
		if err != nil {
			continue
		}
		switches := contextSwitches(pid)
		if name == postgres {
			self += reaped
			for _, c := range pgChildren {
				if t, _, _, err := procTimes(c); err == nil {
					self += t
					switches += contextSwitches(c)
				}
			}
		}
		s[name] = procCPU{pid: pid, ticks: self, switches: switches}
	}
	if self, _, _, err := procTimes(os.Getpid()); err == nil {
		s["load"] = procCPU{pid: os.Getpid(), ticks: self, switches: contextSwitches(os.Getpid())}
	}
	return s
}

// peakRSSByProcess is VmHWM of each process of the stack in KiB; for
// Postgres, of its largest process (each backend maps the shared buffers,
// so a sum would count them many times).
func peakRSSByProcess(runDir string) map[string]int64 {
	out := map[string]int64{}
	if runDir == "" {
		return out
	}
	procs, pgChildren := stackPids(runDir)
	for name, pid := range procs {
		out[name] = peakRSS(pid)
		if name == postgres {
			for _, c := range pgChildren {
				out[name] = max(out[name], peakRSS(c))
			}
		}
	}
	out["load"] = peakRSS(os.Getpid())
	return out
}

// cpuDelta is the CPU in milliseconds each process used between two
// samples. A process that was not running at the start (a cluster instance
// the supervisor restarted, under another pid) started during the run and
// counts whole; what the processes gone by the end used during the run is
// not known, and notes say so.
func cpuDelta(start, end cpuSample) (ms map[string]float64, notes []string) {
	ms = map[string]float64{}
	for _, name := range slices.Sorted(maps.Keys(end)) {
		e := end[name]
		s, ok := start[name]
		switch {
		case ok && s.pid == e.pid:
			if e.ticks >= s.ticks {
				ms[name] = float64(e.ticks-s.ticks) * 1000 / clockTicks
			}
		case ok:
			ms[name] = float64(e.ticks) * 1000 / clockTicks
			notes = append(notes, fmt.Sprintf("%s was restarted during the run (pid %d at the start, %d at the end): counted from pid %d's start; what pid %d (and any process between) used is not", name, s.pid, e.pid, e.pid, s.pid))
		default:
			ms[name] = float64(e.ticks) * 1000 / clockTicks
		}
	}
	for _, name := range slices.Sorted(maps.Keys(start)) {
		if _, ok := end[name]; !ok {
			notes = append(notes, fmt.Sprintf("%s (pid %d) was gone by the end of the run: its CPU during the run is not counted", name, start[name].pid))
		}
	}
	return ms, notes
}

// switchDelta is the context switches each process made between two
// samples, counted as cpuDelta counts CPU (a process restarted during the
// run counts from its start; cpuDelta's notes say so).
func switchDelta(start, end cpuSample) map[string]float64 {
	out := map[string]float64{}
	for name, e := range end {
		if s, ok := start[name]; ok && s.pid == e.pid {
			if e.switches >= s.switches {
				out[name] = float64(e.switches - s.switches)
			}
			continue
		}
		out[name] = float64(e.switches)
	}
	return out
}

// byKind sums a delta's processes by kind ("order" for order-1 and
// order-2, "nats" for its nodes); the load itself is left out. several
// reports whether some kind had more than one process.
func byKind(d map[string]float64) (sums map[string]float64, several bool) {
	sums = map[string]float64{}
	count := map[string]int{}
	for name, ms := range d {
		kind, ok := kindOf(name)
		if !ok {
			continue
		}
		sums[kind] += ms
		count[kind]++
		several = several || count[kind] > 1
	}
	return sums, several
}

// stackCPU sums the stack's processes of a delta (the load itself is not
// the stack), in a stable order.
func stackCPU(d map[string]float64) (total float64, names []string) {
	for name, ms := range d {
		if name == "load" {
			continue
		}
		total += ms
		names = append(names, name)
	}
	slices.Sort(names)
	return total, names
}
