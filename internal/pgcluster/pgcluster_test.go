package pgcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// newCluster makes a fast cluster in a new jetsaga-pg-* directory (not
// t.TempDir(), which the postgres user cannot enter when tests run as root)
// and destroys it when the test ends.
func newCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "jetsaga-pg-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	began := time.Now()
	c, err := Init(ctx, dir, opts)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Logf("Init took %v", time.Since(began).Round(time.Millisecond))
	destroy, err := c.DestroyOnExit(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := destroy(context.Background()); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	return c
}

func query(ctx context.Context, t *testing.T, url, sql string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestClusterLifecycle(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newCluster(t, Options{Fast: true})

	began := time.Now()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Start took %v", time.Since(began).Round(time.Millisecond))
	if running, err := c.Running(ctx); err != nil || !running {
		t.Fatalf("Running after Start: %v, %v", running, err)
	}
	for setting, want := range map[string]string{
		"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
		"max_connections": "200", "listen_addresses": "127.0.0.1", "server_encoding": "UTF8",
		"port": strconv.Itoa(c.Port), "unix_socket_directories": c.SocketDir,
	} {
		if got := query(ctx, t, c.URL("postgres"), "SHOW "+setting); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(c.SocketDir, fmt.Sprintf(".s.PGSQL.%d", c.Port))); err != nil {
		t.Errorf("unix socket: %v", err)
	}

	if err := c.CreateDatabase(ctx, `odd "name"`); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateDatabase(ctx, `odd "name"`); err == nil {
		t.Fatal("creating a database twice succeeded")
	}
	db := c.URL(`odd%20%22name%22`)
	if got := query(ctx, t, db, "SELECT current_database()"); got != `odd "name"` {
		t.Fatalf("current_database() = %q", got)
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('row')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	if err := c.Stop(ctx, "sideways"); err == nil || !strings.Contains(err.Error(), "sideways") {
		t.Fatalf("Stop with an unknown mode: %v", err)
	}
	if err := c.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	if running, err := c.Running(ctx); err != nil || running {
		t.Fatalf("Running after Stop: %v, %v", running, err)
	}
	err = c.Stop(ctx, "fast")
	if err == nil || !strings.Contains(err.Error(), "pg_ctl stop") || !strings.Contains(err.Error(), "Is server running?") {
		t.Fatalf("Stop of a stopped cluster: want an error with the command and its output, got %v", err)
	}

	// Init again on the same directory reuses the cluster, with new settings.
	again, err := Init(ctx, c.Dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := query(ctx, t, again.URL(`odd%20%22name%22`), "SELECT v FROM kept"); got != "row" {
		t.Fatalf("row after re-Init: %q", got)
	}
	if got := query(ctx, t, again.URL("postgres"), "SHOW fsync"); got != "on" {
		t.Errorf("fsync after re-Init without Fast: %q, want on", got)
	}
	text, err := os.ReadFile(filepath.Join(c.Dir, "postgresql.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(text), "include_if_exists = '"+confFile+"'"); n != 1 {
		t.Errorf("postgresql.conf includes %s %d times, want once", confFile, n)
	}
	if err := again.Stop(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port

	// A log file of its own, outside the data directory.
	logDir, err := os.MkdirTemp("", "jetsaga-pg-log-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(logDir) })
	if err := os.Chmod(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(logDir, "server.log")

	c := newCluster(t, Options{Fast: true, Port: taken, LogFile: logFile})
	if c.LogFile != logFile {
		t.Fatalf("LogFile = %s, want %s", c.LogFile, logFile)
	}
	err = c.Start(ctx)
	if err == nil {
		t.Fatal("Start on a taken port succeeded")
	}
	for _, want := range []string{"pg_ctl start", "could not start server", c.LogFile, "Address already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start error lacks %q:\n%v", want, err)
		}
	}
}

func TestStartPicksAnotherPortIfItsWasTaken(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := newCluster(t, Options{Fast: true})
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := c.Port

	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Port == taken {
		t.Fatal("Start kept the taken port")
	}
	if got := query(ctx, t, c.URL("postgres"), "SHOW port"); got != strconv.Itoa(c.Port) {
		t.Fatalf("server on port %s, cluster says %d", got, c.Port)
	}
	// The new port is kept across restarts.
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	query(ctx, t, c.URL("postgres"), "SELECT 'ok'")
}

func TestInitRefusesNonEmptyDirectory(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "jetsaga-pg-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "stray"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil { // so that initdb gets far enough to look inside
		t.Fatal(err)
	}
	_, err = Init(context.Background(), dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "initdb") || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Init into a non-empty directory: want initdb's complaint, got %v", err)
	}
}

func TestInitDirectoryAccessAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the cluster to the postgres user")
	}
	t.Parallel()
	parent, err := os.MkdirTemp("", "jetsaga-pg-*") // root's, 0700
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	_, err = Init(context.Background(), filepath.Join(parent, "a", "data"), Options{})
	if err == nil || !strings.Contains(err.Error(), "not accessible to the \"postgres\" user") || !strings.Contains(err.Error(), parent) {
		t.Fatalf("Init below a root-only directory: got %v", err)
	}
	if _, err := os.Stat(filepath.Join(parent, "a")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Init created directories before failing: %v", err)
	}

	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(parent, "a", "b", "data")
	c, err := Init(context.Background(), data, Options{Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(parent, "a"), filepath.Join(parent, "a", "b"), data, filepath.Join(data, confFile)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != c.as.uid {
			t.Errorf("%s is owned by uid %d, want the postgres user's %d", p, uid, c.as.uid)
		}
	}
}

func TestFindBin(t *testing.T) {
	// Not parallel: it changes PATH.
	fakeBin := func(t *testing.T, dir string, names ...string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("newest version in the lib root", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		root := t.TempDir()
		fakeBin(t, filepath.Join(root, "9.6", "bin"), serverBinaries...)
		fakeBin(t, filepath.Join(root, "10", "bin"), serverBinaries...)
		fakeBin(t, filepath.Join(root, "16", "bin"), "initdb") // incomplete
		fakeBin(t, filepath.Join(root, "latest", "bin"), serverBinaries...)
		got, err := findBin(root)
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(root, "10", "bin"); got != want {
			t.Fatalf("findBin = %s, want %s", got, want)
		}
	})

	t.Run("PATH first, through symlinks", func(t *testing.T) {
		real := filepath.Join(t.TempDir(), "15", "bin")
		fakeBin(t, real, serverBinaries...)
		onPath := t.TempDir()
		if err := os.Symlink(filepath.Join(real, "initdb"), filepath.Join(onPath, "initdb")); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PATH", onPath)
		root := t.TempDir()
		fakeBin(t, filepath.Join(root, "17", "bin"), serverBinaries...)
		got, err := findBin(root)
		if err != nil {
			t.Fatal(err)
		}
		if got != real {
			t.Fatalf("findBin = %s, want %s", got, real)
		}
	})

	t.Run("missing", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		_, err := findBin(filepath.Join(t.TempDir(), "nothing"))
		if !errors.Is(err, ErrNoBinaries) {
			t.Fatalf("findBin without binaries: %v", err)
		}
		if !strings.Contains(err.Error(), "apt-get update && apt-get install -y postgresql") {
			t.Fatalf("the error does not say how to install: %v", err)
		}
	})
}

func TestFreePort(t *testing.T) {
	t.Parallel()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("FreePort gave %d, which is not free: %v", port, err)
	}
	l.Close()
}

// TestDestroyOnExitAfterKill runs a helper process that starts a cluster
// and is then killed with SIGKILL: the watchdog must stop the server and
// remove its directory.
func TestDestroyOnExitAfterKill(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PGCLUSTER_HELPER=1")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	var dir string
	var port int
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if _, err := fmt.Sscanf(lines.Text(), "CLUSTER %s %d", &dir, &port); err == nil {
			break
		}
	}
	if dir == "" {
		t.Fatal("the helper process did not report its cluster")
	}
	go func() { // keep draining, so the helper never blocks on a full pipe
		for lines.Scan() {
		}
	}()
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	query(ctx, t, url, "SELECT 'alive'")

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	deadline := time.Now().Add(30 * time.Second)
	for {
		_, statErr := os.Stat(dir)
		conn, connErr := pgx.Connect(ctx, url)
		if connErr == nil {
			conn.Close(ctx)
		}
		if errors.Is(statErr, os.ErrNotExist) && connErr != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the kill: stat %s: %v; connect: %v", dir, statErr, connErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMain turns the test binary into the helper process of
// TestDestroyOnExitAfterKill when PGCLUSTER_HELPER=1: it starts a cluster
// with DestroyOnExit, prints where, and waits to be killed.
func TestMain(m *testing.M) {
	if os.Getenv("PGCLUSTER_HELPER") == "1" {
		helperStartsCluster()
		return
	}
	os.Exit(m.Run())
}

func helperStartsCluster() {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Println("HELPER ERROR", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "jetsaga-pg-*")
	if err != nil {
		fail(err)
	}
	c, err := Init(ctx, dir, Options{Fast: true})
	if err != nil {
		fail(err)
	}
	if _, err := c.DestroyOnExit(dir); err != nil {
		fail(err)
	}
	if err := c.Start(ctx); err != nil {
		fail(err)
	}
	fmt.Printf("CLUSTER %s %d\n", c.Dir, c.Port)
	time.Sleep(time.Hour) // until killed
}
