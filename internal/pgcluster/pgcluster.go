// Package pgcluster runs a throwaway PostgreSQL cluster from the server
// binaries installed on the machine (Debian's postgresql package): initdb into
// a directory, start and stop it with pg_ctl, and create databases in it.
//
// The tests' harness (internal/testenv) and the dev stack both use it. When
// the process runs as root, every server command runs as the "postgres"
// system user, because PostgreSQL refuses to run as root.
//
// The cluster trusts every local connection and listens on 127.0.0.1 only:
// it is for tests and development, never for data that matters.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Superuser is the cluster's superuser role, which every URL logs in as.
const Superuser = "postgres"

// confFile holds the settings Init writes; postgresql.conf includes it.
const confFile = "jetsaga.conf"

// maxSocketPath is the longest unix socket path the kernel accepts (sun_path less its NUL).
const maxSocketPath = 107

// defaultTimeout bounds a start or stop when ctx has no deadline.
const defaultTimeout = 60 * time.Second

// Options configure Init.
type Options struct {
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Fast trades durability for speed, for tests: fsync, synchronous_commit
	// and full_page_writes are off (and initdb does not sync). A crash of the
	// server process loses nothing; a crash of the machine may corrupt the cluster.
	Fast bool
	// LogFile receives the server's log; default "postgres.log" inside the data directory.
	LogFile string
}

// Cluster is a PostgreSQL cluster in a data directory. Make one with Init.
type Cluster struct {
	// Dir is the data directory (absolute).
	Dir string
	// Port is the TCP port the server listens on at 127.0.0.1.
	Port int
	// SocketDir holds the server's unix socket (psql -h SocketDir); it is Dir,
	// or empty when Dir's path is too long for a socket (TCP only then).
	SocketDir string
	// LogFile is the server's log.
	LogFile string

	bin      string
	as       *account
	autoPort bool // Port was picked by Init, so a first start may pick another
	started  bool // Start has succeeded once
}

// Init makes the cluster in dir, creating dir, unless dir already holds a
// cluster (a PG_VERSION file), in which case it is reused as it is. In both
// cases it (re)writes the settings in dir/jetsaga.conf from opts.
//
// initdb runs with trust authentication, superuser "postgres" and UTF8 in the
// C locale. When this process is root, dir and the parents Init creates are
// given to the "postgres" user, and every existing parent must let that user
// through (a root-owned 0700 directory such as t.TempDir() does not).
func Init(ctx context.Context, dir string, opts Options) (*Cluster, error) {
	bin, err := FindBin()
	if err != nil {
		return nil, err
	}
	as, err := serverAccount()
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cluster directory: %w", err)
	}

	c := &Cluster{Dir: dir, Port: opts.Port, LogFile: opts.LogFile, bin: bin, as: as}
	if c.Port == 0 {
		if c.Port, err = FreePort(); err != nil {
			return nil, err
		}
		c.autoPort = true
	}
	if c.LogFile == "" {
		c.LogFile = filepath.Join(dir, "postgres.log")
	} else if c.LogFile, err = filepath.Abs(c.LogFile); err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	if len(dir)+len("/.s.PGSQL.65535") <= maxSocketPath {
		c.SocketDir = dir
	}

	if err := prepareDir(dir, as); err != nil {
		return nil, fmt.Errorf("prepare cluster directory: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		args := []string{"-D", dir, "--auth=trust", "--username=" + Superuser, "--encoding=UTF8", "--locale=C"}
		if opts.Fast {
			args = append(args, "--no-sync")
		}
		if err := c.run(ctx, "initdb", args...); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("look for an existing cluster: %w", err)
	}

	if err := c.writeConf(opts); err != nil {
		return nil, err
	}
	if opts.LogFile != "" && as != nil {
		// pg_ctl opens the log as the server's user; make sure it may.
		f, err := os.OpenFile(c.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create log file: %w", err)
		}
		f.Close()
		if err := as.chown(c.LogFile); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// writeConf writes the cluster's settings into confFile and makes sure
// postgresql.conf includes it (last, so that it wins).
func (c *Cluster) writeConf(opts Options) error {
	var b strings.Builder
	b.WriteString("# Written by jetsaga's pgcluster on every Init; edits are lost.\n")
	fmt.Fprintf(&b, "listen_addresses = '127.0.0.1'\n")
	fmt.Fprintf(&b, "port = %d\n", c.Port)
	fmt.Fprintf(&b, "unix_socket_directories = %s\n", confQuote(c.SocketDir))
	fmt.Fprintf(&b, "max_connections = 200\n")
	// The outboxes are queue tables with vacuum thresholds of a few hundred
	// dead rows (internal/pg's migrations); look for work every few seconds
	// rather than every minute, or a busy outbox piles up dead rows anyway.
	fmt.Fprintf(&b, "autovacuum_naptime = 5s\n")
	if opts.Fast {
		b.WriteString("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
	}
	conf := filepath.Join(c.Dir, confFile)
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", conf, err)
	}
	if err := c.as.chown(conf); err != nil {
		return err
	}

	main := filepath.Join(c.Dir, "postgresql.conf")
	text, err := os.ReadFile(main)
	if err != nil {
		return fmt.Errorf("read %s: %w", main, err)
	}
	include := "include_if_exists = '" + confFile + "'"
	if bytes.Contains(text, []byte(include)) {
		return nil
	}
	f, err := os.OpenFile(main, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", main, err)
	}
	_, err = fmt.Fprintf(f, "\n%s\n", include)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append to %s: %w", main, err)
	}
	return nil
}

// confQuote quotes s as a postgresql.conf string.
func confQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// shellQuote quotes s for /bin/sh, which pg_ctl passes -o through.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// serverOptions is pg_ctl's -o: the port and socket directory, so that they
// hold even if someone edited the conf file.
func (c *Cluster) serverOptions() string {
	return fmt.Sprintf("-p %d -k %s", c.Port, shellQuote(c.SocketDir))
}

// Start starts the server and returns once it accepts connections. A failure
// says what pg_ctl printed and ends with the tail of the server's log.
//
// If Init picked the port and the first start finds it taken meanwhile,
// Start picks another port and tries again (twice at most).
func (c *Cluster) Start(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := c.run(ctx, "pg_ctl", "start", "-w", "-t", waitSeconds(ctx), "-D", c.Dir, "-l", c.LogFile, "-o", c.serverOptions())
		if err == nil {
			break
		}
		if c.autoPort && !c.started && attempt < 2 && portTaken(c.Port) {
			port, perr := FreePort()
			if perr != nil {
				return perr
			}
			c.Port = port
			if werr := c.rewritePort(); werr != nil {
				return werr
			}
			continue
		}
		return fmt.Errorf("start cluster %s on port %d: %w%s", c.Dir, c.Port, err, c.logTail())
	}
	if err := c.waitAccepting(ctx); err != nil {
		return fmt.Errorf("start cluster %s on port %d: %w%s", c.Dir, c.Port, err, c.logTail())
	}
	c.started = true
	return nil
}

// rewritePort records a new port in the conf file.
func (c *Cluster) rewritePort() error {
	conf := filepath.Join(c.Dir, confFile)
	text, err := os.ReadFile(conf)
	if err != nil {
		return fmt.Errorf("read %s: %w", conf, err)
	}
	lines := strings.Split(string(text), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "port = ") {
			lines[i] = fmt.Sprintf("port = %d", c.Port)
		}
	}
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", conf, err)
	}
	return nil
}

// Stop stops the server with pg_ctl's mode "smart", "fast" or "immediate"
// (empty means fast) and waits until it is gone. Immediate is a crash: the
// next start recovers from the WAL.
func (c *Cluster) Stop(ctx context.Context, mode string) error {
	if mode == "" {
		mode = "fast"
	}
	switch mode {
	case "smart", "fast", "immediate":
	default:
		return fmt.Errorf("stop cluster %s: unknown mode %q (want smart, fast or immediate)", c.Dir, mode)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := c.run(ctx, "pg_ctl", "stop", "-w", "-t", waitSeconds(ctx), "-D", c.Dir, "-m", mode); err != nil {
		return fmt.Errorf("stop cluster %s: %w", c.Dir, err)
	}
	return nil
}

// Restart stops the server (mode fast) and starts it again on the same port,
// returning once it accepts connections.
func (c *Cluster) Restart(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := c.run(ctx, "pg_ctl", "restart", "-w", "-t", waitSeconds(ctx), "-m", "fast", "-D", c.Dir, "-l", c.LogFile, "-o", c.serverOptions()); err != nil {
		return fmt.Errorf("restart cluster %s: %w%s", c.Dir, err, c.logTail())
	}
	if err := c.waitAccepting(ctx); err != nil {
		return fmt.Errorf("restart cluster %s: %w%s", c.Dir, err, c.logTail())
	}
	return nil
}

// Running reports whether the server is running (pg_ctl status).
func (c *Cluster) Running(ctx context.Context) (bool, error) {
	out, err := c.output(ctx, "pg_ctl", "status", "-D", c.Dir)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exit) && exit.ExitCode() == 3: // not running
		return false, nil
	default:
		return false, fmt.Errorf("status of cluster %s: %w: %s", c.Dir, err, bytes.TrimSpace(out))
	}
}

// URL returns the URL of database db on the cluster, as the superuser.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", Superuser, c.Port, db)
}

// CreateDatabase creates the database name on the running cluster.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// waitAccepting connects until the server answers a query or ctx ends.
// pg_ctl -w already waited for the server to be ready; this proves it over TCP.
func (c *Cluster) waitAccepting(ctx context.Context) error {
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attempt, c.URL("postgres"))
		if err == nil {
			err = conn.Ping(attempt)
			conn.Close(attempt)
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("server does not accept connections: %w (last error: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portTaken reports whether something else listens on port at 127.0.0.1.
func portTaken(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return true
	}
	l.Close()
	return false
}

// command prepares a server binary to run as the cluster's account, with a
// clean environment: no PG* variable of the caller leaks in, messages are in English.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = "/" // the caller's working directory may be closed to the server's user
	cmd.Env = c.env()
	cmd.SysProcAttr = c.as.sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func (c *Cluster) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "PG"), strings.HasPrefix(k, "LC_"), k == "LANG", k == "LANGUAGE":
			continue
		case c.as != nil && (k == "HOME" || k == "USER" || k == "LOGNAME"):
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C")
	if c.as != nil {
		env = append(env, "HOME="+c.as.home, "USER="+c.as.name, "LOGNAME="+c.as.name)
	}
	return env
}

// output runs a server binary and returns its combined output.
func (c *Cluster) output(ctx context.Context, name string, args ...string) ([]byte, error) {
	return c.command(ctx, name, args...).CombinedOutput()
}

// run runs a server binary; a failure carries the command and its combined output.
func (c *Cluster) run(ctx context.Context, name string, args ...string) error {
	out, err := c.output(ctx, name, args...)
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// logTail returns the end of the server's log, to append to an error.
func (c *Cluster) logTail() string {
	const tailBytes = 4096
	f, err := os.Open(c.LogFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > tailBytes {
		if _, err := f.Seek(-tailBytes, io.SeekEnd); err != nil {
			return ""
		}
	}
	b, err := io.ReadAll(f)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	if len(b) == tailBytes { // drop the partial first line
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return "\n--- end of " + c.LogFile + " ---\n" + string(bytes.TrimSpace(b))
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, defaultTimeout)
}

// waitSeconds is pg_ctl's -t: the seconds left before ctx's deadline.
func waitSeconds(ctx context.Context) string {
	d, ok := ctx.Deadline()
	if !ok {
		return strconv.Itoa(int(defaultTimeout / time.Second))
	}
	return strconv.Itoa(max(1, int(time.Until(d)/time.Second)))
}
