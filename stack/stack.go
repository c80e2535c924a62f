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
	"crypto/rand"
	"encoding/hex"
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

// PaymentLimitCents is the payment service's --decline-over-cents in the
// stack unless JETSAGA_PAYMENT_FLAGS sets another: charges above it are declined,
// which is how jetsaga load makes declined orders.
const PaymentLimitCents = 1_000_000

// Config says where the stack lives and how it is wired.
type Config struct {
	Root     string            // the project checkout: bin/ and deploy/ are here
	RunDir   string            // default Root/.run
	NATSPort int               // JETSAGA_NATS_PORT, default 4222
	PGPort   int               // JETSAGA_PG_PORT, default 55432
	Addrs    map[string]string // JETSAGA_ORDER_ADDR, JETSAGA_INVENTORY_ADDR, JETSAGA_PAYMENT_ADDR, JETSAGA_READMODEL_ADDR
	Flags    map[string]string // JETSAGA_ORDER_FLAGS, …: extra flags for one service, split on spaces

	// Cluster is the cluster stack (make cluster-up, ClusterFromEnv): three
	// nats-servers with the per-service identities, streams R3, Instances
	// instances of every service. NATSPort is then the first node's client
	// port, and Addrs holds each service's first instance.
	Cluster     bool
	Instances   int // instances of each service in the cluster (JETSAGA_CLUSTER_INSTANCES, default 2)
	RoutePort   int // the first node's route port (JETSAGA_CLUSTER_ROUTE_PORT)
	MonitorPort int // the first node's monitoring port (JETSAGA_CLUSTER_MONITOR_PORT)
	HTTPPort    int // the first service instance's HTTP port (JETSAGA_CLUSTER_HTTP_PORT)

	// NATSProfPort, when not 0, is nats-server's profiling port
	// (JETSAGA_NATS_PROF_PORT; nats-server --profile): its Go profiles
	// under http://127.0.0.1:<port>/debug/pprof/.
	NATSProfPort int
}

// The environment variables of the stack's configuration.
const (
	EnvNATSPort = "JETSAGA_NATS_PORT"
	EnvPGPort   = "JETSAGA_PG_PORT"
	// EnvNATSProfPort turns nats-server's profiling port on.
	EnvNATSProfPort = "JETSAGA_NATS_PROF_PORT"
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
	if os.Getenv(EnvNATSProfPort) != "" {
		if c.NATSProfPort, err = envPort(EnvNATSProfPort, 0); err != nil {
			return c, err
		}
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

// NATSURL is the stack's NATS server; in the cluster, its three nodes,
// comma-separated.
func (c Config) NATSURL() string {
	if c.Cluster {
		urls := make([]string, Nodes)
		for i := range urls {
			urls[i] = c.NodeURL(i + 1)
		}
		return strings.Join(urls, ",")
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", c.NATSPort)
}

// DatabaseURL is the stack's database.
func (c Config) DatabaseURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.PGPort, Database)
}

// URL is the base URL of a service's HTTP API.
func (c Config) URL(service string) string { return "http://" + c.Addrs[service] }

func (c Config) bin(name string) string { return filepath.Join(c.Root, "bin", name) }
func (c Config) logs() string           { return filepath.Join(c.RunDir, "logs") }

// AdminTokenFile is the file holding the bearer token of the services'
// operator endpoints (--admin-token-file): Up writes a random one into the
// run folder, and the CLI's commands that call those endpoints read it.
func (c Config) AdminTokenFile() string { return filepath.Join(c.RunDir, "admin-token") }

// ensureAdminToken writes a random token to AdminTokenFile (mode 0600)
// unless it holds one already.
func (c Config) ensureAdminToken() error {
	if b, err := os.ReadFile(c.AdminTokenFile()); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return nil
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if err := os.WriteFile(c.AdminTokenFile(), []byte(hex.EncodeToString(raw[:])+"\n"), 0o600); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	return nil
}
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
	if c.Cluster {
		env := c.clusterEnv()
		for _, s := range Services {
			env = append(env, EnvFlags(s)+"="+c.Flags[s])
		}
		return env
	}
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
	if c.Cluster {
		return c.clusterProcs()
	}
	var ps []Proc
	for _, s := range Services {
		var args []string
		if s == "payment" {
			// First, so that a --decline-over-cents in the flags wins.
			args = append(args, "--decline-over-cents="+strconv.Itoa(PaymentLimitCents))
		}
		ps = append(ps, Proc{
			Name: s,
			Path: c.bin(s),
			Args: append(args, strings.Fields(c.Flags[s])...),
			Env: []string{
				"NATS_URL=" + c.NATSURL(),
				"DATABASE_URL=" + c.DatabaseURL(),
				"JETSAGA_HTTP_ADDR=" + c.Addrs[s],
				"JETSAGA_LOG_FORMAT=json",
				"JETSAGA_ADMIN_TOKEN_FILE=" + c.AdminTokenFile(),
			},
			LogFile: c.LogFile(s),
			PidFile: c.PidFile(s),
		})
	}
	return ps
}

// ErrAlreadyRunning is returned by Up when the stack in the run folder runs
// already with another configuration (ports, addresses or *_FLAGS) than the
// one asked for: nothing was changed, and the new configuration is not
// applied until Down.
var ErrAlreadyRunning = errors.New("the stack is already running with another configuration")

// Running reports whether the stack's supervisor runs (the stack is up, or
// coming up).
func Running(c Config) bool { return alive(c.pidFile("supervisor")) }

// Up starts Postgres, nats-server and the supervised services (each only if
// not already running) and waits until every service is ready. A stack
// brought down with Down starts again on the same data. When the stack runs
// already with another configuration, Up changes nothing and returns
// ErrAlreadyRunning with the differences. When Up fails, it stops what it
// started itself, so that a failed start leaves nothing running.
func Up(ctx context.Context, c Config, log *zap.Logger) (err error) {
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
	if err := c.ensureAdminToken(); err != nil {
		return err
	}
	if Running(c) {
		if diff := c.differences(); len(diff) > 0 {
			return fmt.Errorf("%w (run folder %s); make down first to apply it:\n  %s", ErrAlreadyRunning, c.RunDir, strings.Join(diff, "\n  "))
		}
		// Up again on the same configuration: bring back a Postgres or
		// nats-server that went away, and wait for the services.
		if _, err := upPostgres(ctx, c, log); err != nil {
			return err
		}
		if c.Cluster {
			if _, err := upNodes(ctx, c, log); err != nil {
				return err
			}
		} else if _, err := upNATS(ctx, c, log); err != nil {
			return err
		}
		return WaitReady(ctx, c, 90*time.Second)
	}
	var started []string // what this call started, in order
	defer func() {
		if err != nil && len(started) > 0 {
			rctx := context.WithoutCancel(ctx)
			log.Warn("start failed; stopping what it started", zap.Strings("started", started), zap.Error(err))
			if rerr := rollback(rctx, c, started, log); rerr != nil {
				err = errors.Join(err, fmt.Errorf("roll back: %w", rerr))
			}
		}
	}()
	pgStarted, err := upPostgres(ctx, c, log)
	if pgStarted {
		started = append(started, "postgres")
	}
	if err != nil {
		return err
	}
	if c.Cluster {
		nodes, err := upNodes(ctx, c, log)
		started = append(started, nodes...)
		if err != nil {
			return err
		}
		if err := provision(ctx, c, log); err != nil {
			return err
		}
		if err := c.writeCLIEnv(); err != nil {
			return fmt.Errorf("write %s: %w", c.CLIEnvFile(), err)
		}
	} else {
		natsStarted, err := upNATS(ctx, c, log)
		if natsStarted {
			started = append(started, "nats")
		}
		if err != nil {
			return err
		}
	}
	for _, s := range Services {
		for i := 1; i <= c.instances(); i++ {
			if addr := c.InstanceAddr(s, i); portOpen(addr) {
				hint := EnvAddr(s)
				if c.Cluster {
					hint = EnvClusterHTTPPort
				}
				return fmt.Errorf("%s: %s is already in use (another stack? make down, or set %s)", c.InstanceName(s, i), addr, hint)
			}
		}
	}
	args := []string{"supervise", "--run-dir", c.RunDir, "--root", c.Root}
	if c.Cluster {
		args = append(args, "--cluster")
	}
	if err := startDetached(c.bin("jetsaga"), args, c.Env(), c.LogFile("supervisor"), c.pidFile("supervisor")); err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	started = append(started, "supervisor")
	if err := os.WriteFile(c.envFile(), []byte(strings.Join(c.Env(), "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("record the stack's configuration: %w", err)
	}
	log.Info("services starting under the supervisor", zap.String("log", c.LogFile("supervisor")))
	return WaitReady(ctx, c, 90*time.Second)
}

// envFile records the configuration a running stack was started with.
func (c Config) envFile() string { return filepath.Join(c.RunDir, "stack.env") }

// differences lists how c differs from the configuration the running stack
// was started with (its stack.env), one "NAME: running X, asked Y" each.
func (c Config) differences() []string {
	b, err := os.ReadFile(c.envFile())
	if err != nil {
		return nil // started before stack.env existed: nothing to compare
	}
	running := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			running[k] = v
		}
	}
	var diff []string
	for _, kv := range c.Env() {
		k, v, _ := strings.Cut(kv, "=")
		if running[k] != v {
			diff = append(diff, fmt.Sprintf("%s: running %q, asked %q", k, running[k], v))
		}
	}
	return diff
}

// rollback stops, newest first, the parts of the stack a failed Up started.
func rollback(ctx context.Context, c Config, started []string, log *zap.Logger) error {
	var errs []error
	for i := len(started) - 1; i >= 0; i-- {
		var err error
		switch name := started[i]; name {
		case "postgres":
			err = stopPostgres(ctx, c)
		default:
			_, err = stopPid(c.pidFile(name), 30*time.Second)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", started[i], err))
		} else {
			log.Info("stopped", zap.String("process", started[i]))
		}
	}
	removeStalePids(c)
	return errors.Join(errs...)
}

// upPostgres starts the stack's Postgres unless it runs, and creates the
// database. started reports whether it started the server.
func upPostgres(ctx context.Context, c Config, log *zap.Logger) (started bool, err error) {
	pc, err := pgcluster.Init(ctx, c.pgDir(), pgcluster.Options{Port: c.PGPort, LogFile: c.LogFile("postgres")})
	if err != nil {
		return false, fmt.Errorf("postgres: %w", err)
	}
	running, err := pc.Running(ctx)
	if err != nil {
		return false, fmt.Errorf("postgres status: %w", err)
	}
	if !running {
		if portOpen(fmt.Sprintf("127.0.0.1:%d", c.PGPort)) {
			return false, fmt.Errorf("postgres: port %d is in use by something else (set %s)", c.PGPort, EnvPGPort)
		}
		if err := pc.Start(ctx); err != nil {
			return false, fmt.Errorf("postgres: %w", err)
		}
		started = true
		log.Info("postgres started", zap.Int("port", c.PGPort), zap.String("data", c.pgDir()))
	}
	conn, err := pgx.Connect(ctx, pc.URL("postgres"))
	if err != nil {
		return started, fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, Database).Scan(&exists); err != nil {
		return started, fmt.Errorf("postgres: %w", err)
	}
	if !exists {
		if err := pc.CreateDatabase(ctx, Database); err != nil {
			return started, fmt.Errorf("postgres: %w", err)
		}
	}
	return started, nil
}

// upNATS starts the stack's nats-server unless it runs. started reports
// whether it started it.
func upNATS(ctx context.Context, c Config, log *zap.Logger) (started bool, err error) {
	if alive(c.pidFile("nats")) {
		return false, nil
	}
	if portOpen(fmt.Sprintf("127.0.0.1:%d", c.NATSPort)) {
		return false, fmt.Errorf("nats: port %d is in use by something else (set %s)", c.NATSPort, EnvNATSPort)
	}
	if err := StartNATS(c); err != nil {
		return false, err
	}
	if err := waitPort(ctx, fmt.Sprintf("127.0.0.1:%d", c.NATSPort), 20*time.Second); err != nil {
		return true, fmt.Errorf("nats-server did not come up (see %s): %w", c.LogFile("nats"), err)
	}
	log.Info("nats-server started", zap.Int("port", c.NATSPort), zap.String("store", c.natsDir()))
	return true, nil
}

// StartNATS starts nats-server on the stack's store, detached.
func StartNATS(c Config) error {
	args := []string{
		"-c", filepath.Join(c.Root, "deploy", "nats", "dev.conf"),
		"-a", "127.0.0.1", "-p", strconv.Itoa(c.NATSPort),
		"-js", "-sd", c.natsDir(), "-n", "jetsaga-dev",
	}
	if c.NATSProfPort != 0 {
		args = append(args, "--profile", strconv.Itoa(c.NATSProfPort))
	}
	return startDetached(c.bin("nats-server"), args, nil, c.LogFile("nats"), c.pidFile("nats"))
}

// NATSStoreDir is nats-server's store directory in the run folder.
func (c Config) NATSStoreDir() string { return c.natsDir() }

// StopServices stops the supervisor, which drains and stops the services
// (SIGTERM, as Down does), and leaves Postgres and nats-server running. Up
// starts the supervisor, and so the services, again. It reports whether the
// supervisor was running.
func StopServices(c Config) (bool, error) {
	stopped, err := stopPid(c.pidFile("supervisor"), 60*time.Second)
	if err != nil {
		return stopped, fmt.Errorf("stop the services: %w", err)
	}
	removeStalePids(c)
	return stopped, nil
}

// WaitReady waits until every service answers /readyz with 200.
func WaitReady(ctx context.Context, c Config, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	var instances []string
	for _, s := range Services {
		for i := 1; i <= c.instances(); i++ {
			instances = append(instances, c.InstanceName(s, i)+"="+c.InstanceAddr(s, i))
		}
	}
	for _, inst := range instances {
		s, addr, _ := strings.Cut(inst, "=")
		for {
			resp, err := client.Get("http://" + addr + "/readyz")
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
// Postgres, and removes the pid files. Data stays in the run folder. It logs
// "stopped" only for what it stopped, "not running" for the rest, and warns
// about a stack port that still answers afterwards (a stack of another run
// folder or checkout).
func Down(ctx context.Context, c Config, log *zap.Logger) error {
	var errs []error
	names := []string{"supervisor", "nats"}
	if c.Cluster {
		names = []string{"supervisor"}
		for i := 1; i <= Nodes; i++ {
			names = append(names, NodeName(i))
		}
	}
	for _, name := range names {
		stopped, err := stopPid(c.pidFile(name), 30*time.Second)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("stop %s: %w", name, err))
		case stopped:
			log.Info("stopped", zap.String("process", name))
		default:
			log.Info("not running", zap.String("process", name))
		}
	}
	if _, err := os.Stat(filepath.Join(c.pgDir(), "PG_VERSION")); err == nil {
		running, err := postgresRunning(ctx, c)
		if err == nil && running {
			err = stopPostgres(ctx, c)
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("stop postgres: %w", err))
		case running:
			log.Info("stopped", zap.String("process", "postgres"))
		default:
			log.Info("not running", zap.String("process", "postgres"))
		}
	} else {
		log.Info("no postgres in this run folder", zap.String("run_dir", c.RunDir))
	}
	removeStalePids(c)
	for _, addr := range c.ports() {
		if portOpen(addr) {
			log.Warn("still listening after down: not a process of this run folder", zap.String("addr", addr), zap.String("run_dir", c.RunDir))
		}
	}
	return errors.Join(errs...)
}

// ports are the addresses the stack listens on.
func (c Config) ports() []string {
	addrs := []string{fmt.Sprintf("127.0.0.1:%d", c.NATSPort), fmt.Sprintf("127.0.0.1:%d", c.PGPort)}
	if c.Cluster {
		for i := 2; i <= Nodes; i++ {
			addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", c.NATSPort+i-1))
		}
	}
	for _, s := range Services {
		for i := 1; i <= c.instances(); i++ {
			addrs = append(addrs, c.InstanceAddr(s, i))
		}
	}
	return addrs
}

func postgresRunning(ctx context.Context, c Config) (bool, error) {
	pc, err := pgcluster.Init(ctx, c.pgDir(), pgcluster.Options{Port: c.PGPort, LogFile: c.LogFile("postgres")})
	if err != nil {
		return false, err
	}
	return pc.Running(ctx)
}

func stopPostgres(ctx context.Context, c Config) error {
	pc, err := pgcluster.Init(ctx, c.pgDir(), pgcluster.Options{Port: c.PGPort, LogFile: c.LogFile("postgres")})
	if err != nil {
		return err
	}
	return pc.Stop(ctx, "fast")
}

// removeStalePids removes the pid files of processes that are gone (the
// services' files, which the supervisor writes, outlive it).
func removeStalePids(c Config) {
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(c.pidFile("x")), "*.pid"))
	for _, f := range files {
		if !alive(f) {
			_ = os.Remove(f)
		}
	}
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
// stopped reports whether a process was running to be stopped.
func stopPid(pidFile string, grace time.Duration) (stopped bool, err error) {
	pid := Pid(pidFile)
	if pid == 0 || !alive(pidFile) {
		_ = os.Remove(pidFile)
		return false, nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return false, err
	}
	deadline := time.Now().Add(grace)
	for alive(pidFile) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true, os.Remove(pidFile)
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
