package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jetsaga/jetsaga/internal/pgcluster"
	"github.com/jetsaga/jetsaga/stack"
)

// Kill targets besides the services.
const (
	targetNATS     = "nats-server"
	targetPostgres = "postgres"
)

// killer kills the stack's processes and counts what it killed.
type killer struct {
	c    stack.Config
	step func(string, ...any)

	mu   sync.Mutex
	rng  *rand.Rand
	done map[string]int
}

func newKiller(c stack.Config, seed int64, step func(string, ...any)) *killer {
	return &killer{c: c, step: step, rng: killRNG(seed), done: map[string]int{}}
}

func (k *killer) count(target string) {
	k.mu.Lock()
	k.done[target]++
	k.mu.Unlock()
}

func (k *killer) counts() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]int, len(k.done))
	for t, n := range k.done {
		out[t] = n
	}
	return out
}

func (k *killer) total() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, v := range k.done {
		n += v
	}
	return n
}

// services kill -9s a random service every interval until ctx is done; the
// supervisor restarts it. A service that is down at that moment (it crashed
// and waits for its restart) is killed once it is back, if that is within
// killWait; else the kill is skipped. Only kills that hit count.
func (k *killer) services(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.mu.Lock()
		name := stack.Services[k.rng.IntN(len(stack.Services))]
		k.mu.Unlock()
		for waited := time.Duration(0); waited < killWait; waited += killPoll {
			if pid, ok := livePid(k.c.PidFile(name), name); ok {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					k.count(name)
				}
				break
			}
			if !sleep(ctx, killPoll) {
				return
			}
		}
	}
}

// How long a kill waits for a service that is down to be back, and how often
// it looks.
const (
	killWait = time.Second
	killPoll = 20 * time.Millisecond
)

// natsOutage waits until at, then kill -9s nats-server, waits until it is
// gone, leaves it down for down, and starts it again on the same store. Once
// begun, the outage runs to its end even if ctx is cancelled, so that the
// stack is never left without NATS.
func (k *killer) natsOutage(ctx context.Context, at, down time.Duration) error {
	if !sleep(ctx, at) {
		return nil
	}
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	pid, ok := livePid(k.c.PidFile("nats"), targetNATS)
	if !ok {
		return fmt.Errorf("kill nats-server: no live process in %s", k.c.PidFile("nats"))
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill nats-server (pid %d): %w", pid, err)
	}
	k.count(targetNATS)
	began := time.Now()
	if err := waitGone(octx, pid); err != nil {
		return fmt.Errorf("kill nats-server (pid %d): %w", pid, err)
	}
	k.step("kill -9 nats-server (pid %d); starting it again on the same store in %s", pid, down)
	sleep(octx, down)
	if err := stack.StartNATS(k.c); err != nil {
		return fmt.Errorf("start nats-server again: %w", err)
	}
	if err := waitPort(octx, fmt.Sprintf("127.0.0.1:%d", k.c.NATSPort)); err != nil {
		return fmt.Errorf("start nats-server again (see %s): %w", k.c.LogFile("nats"), err)
	}
	k.step("nats-server is back (pid %d) after %s down", stack.Pid(k.c.PidFile("nats")), round(time.Since(began)))
	return nil
}

// postgresOutage waits until at, then stops PostgreSQL with pg_ctl stop -m
// immediate (a crash: the next start recovers from the WAL), leaves it down
// for down and starts it again. Like natsOutage, it finishes once begun.
func (k *killer) postgresOutage(ctx context.Context, at, down time.Duration) error {
	if !sleep(ctx, at) {
		return nil
	}
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	// The same cluster stack.Up started: its folder, port and log.
	pc, err := pgcluster.Init(octx, filepath.Join(k.c.RunDir, "pg"), pgcluster.Options{Port: k.c.PGPort, LogFile: k.c.LogFile("postgres")})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	began := time.Now()
	if err := pc.Stop(octx, "immediate"); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	k.count(targetPostgres)
	k.step("pg_ctl stop -m immediate: postgres is down; starting it again in %s", down)
	sleep(octx, down)
	if err := pc.Start(octx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	k.step("postgres is back after %s down (crash recovery from the WAL)", round(time.Since(began)))
	return nil
}

// livePid reads a pid file and reports the pid if that process is alive (not
// a zombie) and runs the binary named bin, so that a stale pid file never
// makes the run kill something else.
func livePid(pidFile, bin string) (int, bool) {
	pid := stack.Pid(pidFile)
	if pid <= 0 || !alive(pid) {
		return 0, false
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || filepath.Base(strings.TrimSuffix(exe, " (deleted)")) != bin {
		return 0, false
	}
	return pid, true
}

// alive reports whether pid runs: it exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitGone waits until pid has exited, reaping it if it is this process's
// child (stack.Up starts nats-server from this process).
func waitGone(ctx context.Context, pid int) error {
	for {
		var ws syscall.WaitStatus
		if wpid, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); wpid == pid || (err != nil && !errors.Is(err, syscall.ECHILD) && !errors.Is(err, syscall.EINTR)) {
			return nil
		}
		if !alive(pid) {
			return nil
		}
		if !sleep(ctx, 20*time.Millisecond) {
			return fmt.Errorf("still running: %w", ctx.Err())
		}
	}
}

// waitPort waits until addr accepts TCP connections.
func waitPort(ctx context.Context, addr string) error {
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return nil
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return fmt.Errorf("%s does not accept connections: %w", addr, err)
		}
	}
}

// sleep waits for d; false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
