// Package testenv gives tests the real servers they run against: an embedded
// NATS server with JetStream (StartNATS) and a fresh PostgreSQL database
// (DatabaseURL), or a whole PostgreSQL cluster of their own (StartPostgres).
// Nothing is mocked.
//
// A package whose tests call DatabaseURL declares
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// so that the throwaway cluster shared by its tests is removed when they end.
package testenv

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// natsReadyTimeout bounds how long a server may take to accept connections.
const natsReadyTimeout = 10 * time.Second

// NATSOptions configure StartNATSWith.
type NATSOptions struct {
	// SyncAlways makes JetStream fsync every write, as production and the dev
	// stack do (sync_interval: always). Off by default in tests, for speed:
	// a stopped server loses nothing either way, only a machine crash would.
	SyncAlways bool
}

// NATS is an embedded nats-server with JetStream, storing into a directory of
// the test's. It can be stopped and restarted on the same port and store, as
// a crashed and restarted server would be.
type NATS struct {
	opts     NATSOptions
	storeDir string

	mu   sync.Mutex
	port int
	srv  *server.Server // nil while stopped
}

// StartNATS starts an embedded nats-server with JetStream on a random port
// of 127.0.0.1, storing in a t.TempDir(), and shuts it down when the test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	return StartNATSWith(t, NATSOptions{})
}

// StartNATSWith is StartNATS with options.
func StartNATSWith(t testing.TB, o NATSOptions) *NATS {
	t.Helper()
	n := &NATS{opts: o, storeDir: t.TempDir()}
	srv, err := startNATSServer(n.storeDir, -1, o)
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	n.srv = srv
	n.port = srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.Stop) // registered after t.TempDir's, so it runs before the store is removed
	return n
}

func serverOptions(storeDir string, port int, o NATSOptions) *server.Options {
	return &server.Options{
		ServerName: "testenv",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		SyncAlways: o.SyncAlways,
		NoSigs:     true,
		NoLog:      true,
	}
}

// SetMaxControlLine reloads the running server's configuration with
// max_control_line = mcl (0: the default, 4096). Every connection takes the
// new limit at once: a client whose next protocol line is longer gets
// -ERR 'maximum control line exceeded' and is closed, as with a real server.
func (n *NATS) SetMaxControlLine(t testing.TB, mcl int32) {
	t.Helper()
	srv := n.Server()
	if srv == nil {
		t.Fatal("SetMaxControlLine: the server is stopped")
	}
	opts := serverOptions(n.storeDir, n.port, n.opts)
	opts.MaxControlLine = mcl
	if err := srv.ReloadOptions(opts); err != nil {
		t.Fatalf("reload nats-server with max_control_line %d: %v", mcl, err)
	}
}

func startNATSServer(storeDir string, port int, o NATSOptions) (*server.Server, error) {
	opts := serverOptions(storeDir, port, o)
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configure: %w", err)
	}
	log := &problemLog{}
	srv.SetLoggerV2(log, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(natsReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("not accepting connections on 127.0.0.1:%d after %v%s", port, natsReadyTimeout, log)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("JetStream is not enabled%s", log)
	}
	return srv, nil
}

// URL is the server's client URL; it stays the same across restarts.
func (n *NATS) URL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Sprintf("nats://127.0.0.1:%d", n.port)
}

// Server returns the running server, or nil while it is stopped.
func (n *NATS) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// StoreDir is the directory JetStream stores into; it outlives restarts.
func (n *NATS) StoreDir() string { return n.storeDir }

// Stop shuts the server down and waits until it is down. What JetStream
// stored stays on disk for Restart. Stopping a stopped server does nothing.
func (n *NATS) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}

// Restart stops the server if it runs, then starts a new one on the same port
// and store directory, and waits until it accepts connections. Clients made
// by Connect reconnect by themselves.
func (n *NATS) Restart(t testing.TB) {
	t.Helper()
	n.Stop()
	n.mu.Lock()
	defer n.mu.Unlock()
	srv, err := startNATSServer(n.storeDir, n.port, n.opts)
	if err != nil {
		t.Fatalf("restart nats-server: %v", err)
	}
	n.srv = srv
}

// Connect connects to the server, reconnecting forever every 100ms while it
// is down, and closes the connection when the test ends.
func (n *NATS) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(n.URL(),
		nats.Name("testenv "+t.Name()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond),
	)
	if err != nil {
		t.Fatalf("connect to nats-server at %s: %v", n.URL(), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// problemLog keeps the server's last warnings and errors, to explain a
// server that does not start. It never writes to the test's log, which a
// server goroutine could reach after the test has ended.
type problemLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *problemLog) add(level, format string, v []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 20 {
		l.lines = l.lines[1:]
	}
	l.lines = append(l.lines, level+": "+fmt.Sprintf(format, v...))
}

func (l *problemLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 0 {
		return ""
	}
	return "\nserver log:\n" + strings.Join(l.lines, "\n")
}

func (l *problemLog) Noticef(string, ...any)         {}
func (l *problemLog) Debugf(string, ...any)          {}
func (l *problemLog) Tracef(string, ...any)          {}
func (l *problemLog) Warnf(format string, v ...any)  { l.add("warning", format, v) }
func (l *problemLog) Errorf(format string, v ...any) { l.add("error", format, v) }
func (l *problemLog) Fatalf(format string, v ...any) { l.add("fatal", format, v) }
