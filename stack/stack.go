// Package stack runs jetsaga's local stack as real, separate processes: a
// nats-server built from the nats-server/v2 module, a throwaway PostgreSQL
// cluster, and the four services under a supervisor that restarts them when
// they exit. Everything lives in a run folder (.run/ by default): the NATS
// store, the Postgres data, logs and pid files. It backs make up, make down
// and make demo.
package stack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/pgcluster"
)

// Services in start order, with their default HTTP addresses.
var Services = []string{"order", "inventory", "payment", "readmodel"}

var defaultAddrs = map[string]string{
	"order":     "127.0.0.1:8081",
	"inventory": "127.0.0.1:8082",
	"payment":   "127.0.0.1:8083",
	"readmodel": "127.0.0.1:8084",
}

// Database is the database the stack's services share, one schema each.
const Database = "jetsaga"

// Config says where the stack lives and how it is wired.
type Config struct {
	Root     string            // the project checkout: bin/ and deploy/ are here
	RunDir   string            // default Root/.run
	NATSPort int               // JETSAGA_NATS_PORT, default 4222
	PGPort   int               // JETSAGA_PG_PORT, default 55432
	Addrs    map[string]string // JETSAGA_ORDER_ADDR, JETSAGA_INVENTORY_ADDR, JETSAGA_PAYMENT_ADDR, JETSAGA_READMODEL_ADDR
	Flags    map[string]string // JETSAGA_ORDER_FLAGS, …: extra flags for one service, split on spaces
}

// The environment variables of the stack's configuration.
const (
	EnvNATSPort = "JETSAGA_NATS_PORT"
	EnvPGPort   = "JETSAGA_PG_PORT"
)

// EnvAddr is the variable of a service's HTTP address: JETSAGA_ORDER_ADDR.
func EnvAddr(service string) string { return "JETSAGA_" + strings.ToUpper(service) + "_ADDR" }

// EnvFlags is the variable of a service's extra flags: JETSAGA_ORDER_FLAGS.
func EnvFlags(service string) string { return "JETSAGA_" + strings.ToUpper(service) + "_FLAGS" }

// FromEnv reads the stack's configuration from the environment.
func FromEnv(root, runDir string) (Config, error) {
	c := Config{Root: root, RunDir: cmp.Or(runDir, filepath.Join(root, ".run")), Addrs: map[string]string{}, Flags: map[string]string{}}
	var err error
	if c.NATSPort, err = envPort(EnvNATSPort, 4222); err != nil {
		return c, err
	}
	if c.PGPort, err = envPort(EnvPGPort, 55432); err != nil {
		return c, err
	}
	for _, s := range Services {
		c.Addrs[s] = cmp.Or(os.Getenv(EnvAddr(s)), defaultAddrs[s])
		c.Flags[s] = os.Getenv(EnvFlags(s))
	}
	return c, nil
}

func envPort(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	p, err := strconv.Atoi(v)
	if err != nil || p <= 0 || p > 65535 {
		return 0, fmt.Errorf("%s=%q: want a TCP port", name, v)
	}
	return p, nil
}

// NATSURL is the stack's NATS server.
func (c Config) NATSURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", c.NATSPort) }

// DatabaseURL is the stack's database.
func (c Config) DatabaseURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.PGPort, Database)
}

// URL is the base URL of a service's HTTP API.
func (c Config) URL(service string) string { return "http://" + c.Addrs[service] }

func (c Config) bin(name string) string  { return filepath.Join(c.Root, "bin", name) }
func (c Config) logs() string            { return filepath.Join(c.RunDir, "logs") }
func (c Config) pidFile(n string) string { return filepath.Join(c.RunDir, "pids", n+".pid") }

// PidFile holds the pid of one process of the stack: a service, "nats" or
// "supervisor".
func (c Config) PidFile(name string) string { return c.pidFile(name) }
func (c Config) pgDir() string              { return filepath.Join(c.RunDir, "pg") }
func (c Config) natsDir() string            { return filepath.Join(c.RunDir, "nats") }

// LogFile is the log of one process of the stack (a service, nats,
// postgres or supervisor).
func (c Config) LogFile(name string) string { return filepath.Join(c.logs(), name+".log") }

// Env is c as the environment FromEnv reads, so that a process started
// with it (the supervisor) sees the same stack.
func (c Config) Env() []string {
	env := []string{
		EnvNATSPort + "=" + strconv.Itoa(c.NATSPort),
		EnvPGPort + "=" + strconv.Itoa(c.PGPort),
	}
	for _, s := range Services {
		env = append(env, EnvAddr(s)+"="+c.Addrs[s], EnvFlags(s)+"="+c.Flags[s])
	}
	return env
}

// Procs are the service processes the supervisor runs.
func (c Config) Procs() []Proc {
	var ps []Proc
	for _, s := range Services {
		ps = append(ps, Proc{
			Name: s,
			Path: c.bin(s),
			Args: strings.Fields(c.Flags[s]),
			Env: []string{
				"NATS_URL=" + c.NATSURL(),
				"DATABASE_URL=" + c.DatabaseURL(),
				"JETSAGA_HTTP_ADDR=" + c.Addrs[s],
				"JETSAGA_LOG_FORMAT=json",
			},
			LogFile: c.LogFile(s),
			PidFile: c.PidFile(s),
		})
	}
	return ps
}

// Up starts Postgres, nats-server and the supervised services (each only if
// not already running) and waits until every service is ready. A stack
// brought down with Down starts again on the same data.
func Up(ctx context.Context, c Config, log *zap.Logger) error {
	for _, name := range append([]string{"nats-server", "jetsaga"}, Services...) {
		if _, err := os.Stat(c.bin(name)); err != nil {
			return fmt.Errorf("%s is not built: run make build (%w)", c.bin(name), err)
		}
	}
	for _, d := range []string{c.RunDir, c.logs(), filepath.Dir(c.pidFile("x")), c.natsDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := upPostgres(ctx, c, log); err != nil {
		return err
	}
	if err := upNATS(ctx, c, log); err != nil {
		return err
	}
	if !alive(c.pidFile("supervisor")) {
		for _, s := range Services {
			if portOpen(c.Addrs[s]) {
				return fmt.Errorf("%s: %s is already in use (another stack? make down, or set %s)", s, c.Addrs[s], EnvAddr(s))
			}
		}
		args := []string{"supervise", "--run-dir", c.RunDir, "--root", c.Root}
		if err := startDetached(c.bin("jetsaga"), args, c.Env(), c.LogFile("supervisor"), c.pidFile("supervisor")); err != nil {
			return fmt.Errorf("start supervisor: %w", err)
		}
		log.Info("services starting under the supervisor", zap.String("log", c.LogFile("supervisor")))
	}
	return WaitReady(ctx, c, 90*time.Second)
}

func upPostgres(ctx context.Context, c Config, log *zap.Logger) error {
	pc, err := pgcluster.Init(ctx, c.pgDir(), pgcluster.Options{Port: c.PGPort, LogFile: c.LogFile("postgres")})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	running, err := pc.Running(ctx)
	if err != nil {
		return fmt.Errorf("postgres status: %w", err)
	}
	if !running {
		if portOpen(fmt.Sprintf("127.0.0.1:%d", c.PGPort)) {
			return fmt.Errorf("postgres: port %d is in use by something else (set %s)", c.PGPort, EnvPGPort)
		}
		if err := pc.Start(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		log.Info("postgres started", zap.Int("port", c.PGPort), zap.String("data", c.pgDir()))
	}
	conn, err := pgx.Connect(ctx, pc.URL("postgres"))
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, Database).Scan(&exists); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if !exists {
		if err := pc.CreateDatabase(ctx, Database); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
	}
	return nil
}

func upNATS(ctx context.Context, c Config, log *zap.Logger) error {
	if alive(c.pidFile("nats")) {
		return nil
	}
	if portOpen(fmt.Sprintf("127.0.0.1:%d", c.NATSPort)) {
		return fmt.Errorf("nats: port %d is in use by something else (set %s)", c.NATSPort, EnvNATSPort)
	}
	if err := StartNATS(c); err != nil {
		return err
	}
	if err := waitPort(ctx, fmt.Sprintf("127.0.0.1:%d", c.NATSPort), 20*time.Second); err != nil {
		return fmt.Errorf("nats-server did not come up (see %s): %w", c.LogFile("nats"), err)
	}
	log.Info("nats-server started", zap.Int("port", c.NATSPort), zap.String("store", c.natsDir()))
	return nil
}

// StartNATS starts nats-server on the stack's store, detached.
func StartNATS(c Config) error {
	args := []string{
		"-c", filepath.Join(c.Root, "deploy", "nats", "dev.conf"),
		"-a", "127.0.0.1", "-p", strconv.Itoa(c.NATSPort),
		"-js", "-sd", c.natsDir(), "-n", "jetsaga-dev",
	}
	return startDetached(c.bin("nats-server"), args, nil, c.LogFile("nats"), c.pidFile("nats"))
}

// WaitReady waits until every service answers /readyz with 200.
func WaitReady(ctx context.Context, c Config, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for _, s := range Services {
		for {
			resp, err := client.Get(c.URL(s) + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not ready after %s (see %s)", s, timeout, c.LogFile(s))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// Down stops the services (SIGTERM: they drain), then nats-server, then
// Postgres. Data stays in the run folder.
func Down(ctx context.Context, c Config, log *zap.Logger) error {
	var errs []error
	for _, name := range []string{"supervisor", "nats"} {
		if err := stopPid(c.pidFile(name), 30*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", name, err))
		} else {
			log.Info("stopped", zap.String("process", name))
		}
	}
	if _, err := os.Stat(filepath.Join(c.pgDir(), "PG_VERSION")); err == nil {
		pc, err := pgcluster.Init(ctx, c.pgDir(), pgcluster.Options{Port: c.PGPort, LogFile: c.LogFile("postgres")})
		if err == nil {
			var running bool
			if running, err = pc.Running(ctx); err == nil && running {
				err = pc.Stop(ctx, "fast")
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("stop postgres: %w", err))
		} else {
			log.Info("stopped", zap.String("process", "postgres"))
		}
	}
	return errors.Join(errs...)
}

// startDetached starts a process in its own session (it outlives make),
// output appended to logFile, pid written to pidFile.
func startDetached(path string, args, env []string, logFile, pidFile string) error {
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	return cmd.Process.Release()
}

// Pid reads a pid file; 0 when absent.
func Pid(pidFile string) int {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func alive(pidFile string) bool {
	pid := Pid(pidFile)
	return pid > 0 && syscall.Kill(pid, 0) == nil && !zombie(pid)
}

// zombie reports a process that exited but was not reaped (its parent is
// gone or busy); it counts as dead.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// stopPid sends SIGTERM and waits for the process to go, then SIGKILLs it.
func stopPid(pidFile string, grace time.Duration) error {
	pid := Pid(pidFile)
	if pid == 0 || !alive(pidFile) {
		_ = os.Remove(pidFile)
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	deadline := time.Now().Add(grace)
	for alive(pidFile) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return os.Remove(pidFile)
}

func portOpen(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func waitPort(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !portOpen(addr) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %s", addr, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
