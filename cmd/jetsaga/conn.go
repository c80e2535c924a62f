package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/access"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/stack"
)

// endpoints are where the CLI finds the stack; defaults are make up's.
type endpoints struct {
	natsURL, databaseURL, orderURL, readmodelURL string
	// nats is the CLI's NATS identity and TLS files (--nats-nkey-seed,
	// --nats-creds, --nats-tls-*).
	nats access.Client
	// identity names the identity a command runs as by default (its inbox
	// prefix): access.Reader unless set before flags (access.Operator for
	// dlq and provision).
	identity string
}

// flags registers the named connection flags ("nats-url", "database-url",
// "order-url", "readmodel-url") on fs, all four when none is named, so that
// -h lists only what a command uses.
func (e *endpoints) flags(fs *flag.FlagSet, names ...string) {
	c := localStack("")
	want := func(name string) bool { return len(names) == 0 || slices.Contains(names, name) }
	if want("nats-url") {
		fs.StringVar(&e.natsURL, "nats-url", c.NATSURL(), "NATS server URL(s), comma-separated")
		e.nats.AddFlags(fs, access.InboxPrefix(cmp.Or(e.identity, access.Reader)))
	}
	if want("database-url") {
		fs.StringVar(&e.databaseURL, "database-url", c.DatabaseURL(), "PostgreSQL database of the services, all four schemas (one per service where --<service>-database-url says so)")
	}
	if want("order-url") {
		fs.StringVar(&e.orderURL, "order-url", c.URL("order"), "order service HTTP API")
	}
	if want("readmodel-url") {
		fs.StringVar(&e.readmodelURL, "readmodel-url", c.URL("readmodel"), "readmodel service HTTP API")
	}
}

// localStack is the configuration of the local stack: its ports and
// addresses from the environment, its checkout found from the working
// folder or from this binary (stack.FindRoot), its run folder runDir
// (default .run in the checkout). Outside a checkout Root is empty: the
// connection defaults still hold, and the stack commands say what is wrong
// (requireRoot).
func localStack(runDir string) stack.Config {
	root := findRoot()
	c, err := stack.FromEnv(root, runDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jetsaga:", err)
		os.Exit(2)
	}
	return c
}

// findRoot is the jetsaga checkout of the working folder or of this binary,
// or "" when there is none.
func findRoot() string {
	wd, _ := os.Getwd()
	exe, _ := os.Executable()
	root, err := stack.FindRoot(wd, exe)
	if err != nil {
		return ""
	}
	return root
}

// stackIn is the local stack for a command that runs it (up, down, demo,
// chaos): root, when given, is the checkout (--root); runDir, when given, the
// run folder; sub, when runDir is not given, a run folder under the
// checkout's .run (demo, chaos).
func stackIn(root, runDir, sub string) (stack.Config, error) {
	c := localStack(absRunDir(runDir))
	if root != "" {
		a, err := filepath.Abs(root)
		if err != nil {
			return c, err
		}
		if !stack.IsRoot(a) {
			return c, fmt.Errorf("--root %s: %w", root, stack.ErrNoRoot)
		}
		c.Root = a
		if runDir == "" {
			c.RunDir = filepath.Join(a, ".run")
		}
	}
	if c.Root == "" {
		return c, stack.ErrNoRoot
	}
	if runDir == "" && sub != "" {
		c.RunDir = filepath.Join(c.Root, ".run", sub)
	}
	return c, nil
}

// parse parses a command's flags and their environment variables. A bad
// flag was printed by the flag package already, with the usage: it ends the
// command with exit code 2 and nothing more.
func parse(fs *flag.FlagSet, args []string) error {
	err := service.Parse(fs, args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	if _, ok := errors.AsType[*service.EnvError](err); ok {
		return err
	}
	return exitError{code: 2}
}

// connectNATS connects as the identity of ep's credential flags.
func connectNATS(ep endpoints) (*nats.Conn, jetstream.JetStream, error) {
	return connectNATSAs(ep.natsURL, ep.nats)
}

func connectNATSAs(url string, cl access.Client) (*nats.Conn, jetstream.JetStream, error) {
	opts, err := cl.Options()
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(url, append(opts, nats.Name("jetsaga-cli"), nats.Timeout(5*time.Second))...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func openDB(ctx context.Context, url string) (*pgxpool.Pool, error) {
	return openDBConns(ctx, url, 0)
}

// openDBConns is openDB with at least minConns connections allowed, unless
// the URL sets pool_max_conns itself.
func openDBConns(ctx context.Context, url string, minConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", url, err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = max(cfg.MaxConns, minConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", url, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database %s: %w", url, err)
	}
	return pool, nil
}

func cliLogger() *zap.Logger {
	log, err := service.NewLogger(cmp.Or(os.Getenv("JETSAGA_LOG_LEVEL"), "info"), "console")
	if err != nil {
		return zap.NewNop()
	}
	return log
}

func absRunDir(d string) string {
	if d == "" {
		return ""
	}
	a, err := filepath.Abs(d)
	if err != nil {
		return d
	}
	return a
}

// adminTokenFlag registers --admin-token-file: the file holding the bearer
// token of the services' operator endpoints, by default
// JETSAGA_ADMIN_TOKEN_FILE or the local stack's (written by jetsaga up).
func adminTokenFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("JETSAGA_ADMIN_TOKEN_FILE")
	if def == "" {
		def = localStack("").AdminTokenFile()
	}
	return fs.String("admin-token-file", def, "file holding the bearer token of the operator endpoints (PUT /stock, POST /admin/rebuild); env JETSAGA_ADMIN_TOKEN_FILE, default the local stack's")
}

// readAdminToken reads the token of path; a file that does not exist gives
// "" (a stack without a token: its operator endpoints are open).
func readAdminToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
