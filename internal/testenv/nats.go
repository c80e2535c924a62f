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
	"net/url"
	"os"
	"path/filepath"
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
	// Auth is a nats-server configuration file holding an authorization
	// block (deploy/nats/identities/auth.conf): the server takes its users
	// and permissions, so clients must connect as one of its identities
	// (ConnectAs).
	Auth string
}

// NATS is an embedded nats-server with JetStream, storing into a directory of
// the test's. It can be stopped and restarted on the same port and store, as
// a crashed and restarted server would be.
type NATS struct {
	opts     NATSOptions
	storeDir string
	name     string              // server name; unique in a cluster
	cluster  *server.ClusterOpts // nil: a single server
	routes   []*url.URL          // the cluster's route URLs (all nodes)

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
	n := &NATS{opts: o, storeDir: t.TempDir(), name: "testenv"}
	srv, err := n.startServer(-1)
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	n.srv = srv
	n.port = srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.Stop) // registered after t.TempDir's, so it runs before the store is removed
	return n
}

func (n *NATS) serverOptions(port int) (*server.Options, error) {
	opts := &server.Options{}
	if n.opts.Auth != "" {
		// The authorization block, read as nats-server reads it: a
		// configuration file of the server's own, including it.
		raw, err := os.ReadFile(n.opts.Auth)
		if err != nil {
			return nil, fmt.Errorf("authorization: %w", err)
		}
		dir := filepath.Join(n.storeDir, "conf")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "auth.conf"), raw, 0o600); err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, "server.conf")
		if err := os.WriteFile(conf, []byte("include \"auth.conf\"\n"), 0o600); err != nil {
			return nil, err
		}
		if opts, err = server.ProcessConfigFile(conf); err != nil {
			return nil, fmt.Errorf("authorization %s: %w", n.opts.Auth, err)
		}
	}
	opts.ServerName = n.name
	opts.Host = "127.0.0.1"
	opts.Port = port
	opts.JetStream = true
	opts.StoreDir = n.storeDir
	opts.SyncAlways = n.opts.SyncAlways
	opts.NoSigs = true
	opts.NoLog = true
	if n.cluster != nil {
		opts.Cluster = *n.cluster
		opts.Routes = n.routes
	}
	return opts, nil
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
	opts, err := n.serverOptions(n.port)
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxControlLine = mcl
	if err := srv.ReloadOptions(opts); err != nil {
		t.Fatalf("reload nats-server with max_control_line %d: %v", mcl, err)
	}
}

func (n *NATS) startServer(port int) (*server.Server, error) {
	opts, err := n.serverOptions(port)
	if err != nil {
		return nil, err
	}
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
	srv, err := n.startServer(n.port)
	if err != nil {
		t.Fatalf("restart nats-server: %v", err)
	}
	n.srv = srv
}

// Connect connects to the server, reconnecting forever every 100ms while it
// is down, and closes the connection when the test ends.
func (n *NATS) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	return connect(t, n.URL(), opts...)
}

func connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{
		nats.Name("testenv " + t.Name()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
	}, opts...)...)
	if err != nil {
		t.Fatalf("connect to nats-server at %s: %v", url, err)
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

// Name is the server's name (n1, n2, n3 in a cluster).
func (n *NATS) Name() string { return n.name }
