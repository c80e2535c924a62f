package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// The log lines the run counts: a service's warn line for each injected
// fault (internal/fault), and the supervisor's line for each restart
// (stack.Supervise).
const (
	faultMsg   = "fault injected"
	restartMsg = "process exited; restarting"
)

// countFaults counts a service's JSON log lines {"msg":"fault injected",
// "fault":...} by fault. Lines that are not JSON (a panic's output, say) are
// skipped.
func countFaults(r io.Reader) (map[string]int, error) {
	counts := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	needle := []byte(faultMsg)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, needle) {
			continue
		}
		var l struct {
			Msg   string `json:"msg"`
			Fault string `json:"fault"`
		}
		if json.Unmarshal(line, &l) != nil || l.Msg != faultMsg || l.Fault == "" {
			continue
		}
		counts[l.Fault]++
	}
	return counts, sc.Err()
}

// Restarts are the supervisor's restarts of one service, by why it exited.
type Restarts struct {
	Crashed int // exit code 3: an injected crash
	Killed  int // killed by a signal (the run's kill -9)
	Other   int // any other exit, e.g. a start-up error
}

// Total is every restart.
func (r Restarts) Total() int { return r.Crashed + r.Killed + r.Other }

// crashExitCode is internal/fault's CrashExitCode.
const crashExitCode = 3

// countRestarts reads the supervisor's log (zap's console encoding: time,
// level, logger, caller, message, then the fields as JSON) and counts the
// restarts of each service by exit code. Go reports a process ended by a
// signal with exit code -1.
func countRestarts(r io.Reader) (map[string]Restarts, error) {
	counts := map[string]Restarts{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	needle := []byte(restartMsg)
	for sc.Scan() {
		line := sc.Bytes()
		i := bytes.Index(line, needle)
		if i < 0 {
			continue
		}
		j := bytes.IndexByte(line[i:], '{')
		if j < 0 {
			continue
		}
		var f struct {
			Service  string `json:"service"`
			ExitCode *int   `json:"exit_code"`
		}
		if json.Unmarshal(line[i+j:], &f) != nil || f.Service == "" || f.ExitCode == nil {
			continue
		}
		c := counts[f.Service]
		switch *f.ExitCode {
		case crashExitCode:
			c.Crashed++
		case -1:
			c.Killed++
		default:
			c.Other++
		}
		counts[f.Service] = c
	}
	return counts, sc.Err()
}

// countFile opens path and counts it with count; a missing file counts nothing.
func countFile[T any](path string, count func(io.Reader) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		if os.IsNotExist(err) {
			return count(bytes.NewReader(nil))
		}
		return zero, fmt.Errorf("read log: %w", err)
	}
	defer f.Close()
	v, err := count(f)
	if err != nil {
		return v, fmt.Errorf("read %s: %w", path, err)
	}
	return v, nil
}
