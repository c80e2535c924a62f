package load

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat's times:
// 100 on every Linux architecture Go runs on.
const clockTicks = 100

// Processes of the stack whose CPU the load measures, as named in the run
// folder's pid files, and the name of Postgres.
var (
	stackProcs = []string{"order", "inventory", "payment", "readmodel", "nats"}
	postgres   = "postgres"
)

// cpuSample is the CPU time each process of the stack had used at one
// moment, in clock ticks.
type cpuSample map[string]int64

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
// of the services and nats-server, and the postmaster's pid file in the
// Postgres data folder. Postgres also counts every live child of the
// postmaster. Missing processes are left out.
func stackPids(runDir string) (procs map[string]int, pgChildren []int) {
	procs = map[string]int{}
	for _, name := range stackProcs {
		if pid := pidFromFile(filepath.Join(runDir, "pids", name+".pid")); pid > 0 && alive(pid) {
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
// The load's own process is "load".
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
		if name == postgres {
			self += reaped
			for _, c := range pgChildren {
				if t, _, _, err := procTimes(c); err == nil {
					self += t
				}
			}
		}
		s[name] = self
	}
	if self, _, _, err := procTimes(os.Getpid()); err == nil {
		s["load"] = self
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
// samples; processes missing from either are left out.
func cpuDelta(start, end cpuSample) map[string]float64 {
	out := map[string]float64{}
	for name, e := range end {
		if s, ok := start[name]; ok && e >= s {
			out[name] = float64(e-s) * 1000 / clockTicks
		}
	}
	return out
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
