package stack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/fault"
	"github.com/jetsaga/jetsaga/internal/service"
)

// Proc is one process the supervisor keeps running.
type Proc struct {
	Name    string
	Path    string
	Args    []string
	Env     []string // added to the supervisor's environment
	LogFile string   // stdout and stderr, appended
	PidFile string   // holds the running process's pid (for chaos kills); optional
}

// Supervise starts every proc and restarts it whenever it exits, as systemd
// would (Restart=always, RestartSec=100ms): a crash (exit code 3, the
// injected one, or a kill) is restarted after 100ms every time; after any
// other exit the delay doubles while the process keeps dying within 2s of
// its start, up to 2s. When ctx is done it sends SIGTERM to
// each, waits up to grace for them to drain, kills what is left, and returns.
func Supervise(ctx context.Context, log *zap.Logger, procs []Proc, grace time.Duration) error {
	if len(procs) == 0 {
		return errors.New("supervise: no processes")
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { keep(ctx, log.With(zap.String("service", p.Name)), p, grace) })
	}
	wg.Wait()
	return nil
}

func keep(ctx context.Context, log *zap.Logger, p Proc, grace time.Duration) {
	const first = 100 * time.Millisecond
	backoff := first
	// The faults the earlier processes injected, read from their logs: a
	// crash ends the process that counted it, so each new process gets the
	// sum (--inject-previous) and its jetsaga_faults_injected_total starts
	// there.
	faults := fault.Counts{}
	for restarts := 0; ctx.Err() == nil; restarts++ {
		started := time.Now()
		var extra []string
		if len(faults) > 0 {
			extra = append(extra, service.EnvName("inject-previous")+"="+faults.String())
		}
		offset := fileSize(p.LogFile)
		code, err := runOnce(ctx, p, extra, grace)
		for name, n := range countFaults(p.LogFile, offset) {
			faults[name] += n
		}
		if ctx.Err() != nil {
			log.Info("stopped", zap.Int("exit_code", code))
			return
		}
		// A crash — the injected one (exit 3) or a kill by signal (-1) —
		// restarts after the short delay every time, as systemd's
		// RestartSec does; any other exit is likely a start-up error, so
		// the delay doubles while the process keeps dying young.
		if time.Since(started) > 2*time.Second || code == fault.CrashExitCode || code == -1 {
			backoff = first
		}
		log.Warn("process exited; restarting", zap.Int("exit_code", code), zap.Error(err),
			zap.Duration("uptime", time.Since(started)), zap.Duration("restart_in", backoff), zap.Int("restarts", restarts+1))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if code != fault.CrashExitCode && code != -1 {
			backoff = min(backoff*2, 2*time.Second)
		}
	}
}

// runOnce runs p, with extraEnv added to its environment, until it exits or
// ctx is done (then SIGTERM, and SIGKILL after grace). It returns the exit
// code.
func runOnce(ctx context.Context, p Proc, extraEnv []string, grace time.Duration) (int, error) {
	out, err := os.OpenFile(p.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return -1, fmt.Errorf("open log: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = append(append(os.Environ(), p.Env...), extraEnv...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("start %s: %w", p.Path, err)
	}
	if p.PidFile != "" {
		_ = os.WriteFile(p.PidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return cmd.ProcessState.ExitCode(), err
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-done
		}
		return cmd.ProcessState.ExitCode(), nil
	}
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// countFaults counts the "fault injected" lines (JSON logs) of a log file
// from offset on, by fault.
func countFaults(path string, offset int64) fault.Counts {
	counts := fault.Counts{}
	f, err := os.Open(path)
	if err != nil {
		return counts
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return counts
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"fault injected"`)) {
			continue
		}
		var entry struct {
			Msg   string `json:"msg"`
			Fault string `json:"fault"`
		}
		if json.Unmarshal(line, &entry) == nil && entry.Msg == "fault injected" && entry.Fault != "" {
			counts[entry.Fault]++
		}
	}
	return counts
}
