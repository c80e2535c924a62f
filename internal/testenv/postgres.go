package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsaga/jetsaga/internal/pgcluster"
)

// EnvDatabaseURL names the variable that points the tests at a PostgreSQL
// server of the user's instead of a throwaway cluster.
const EnvDatabaseURL = "DATABASE_URL"

// clusterTimeout bounds making, starting and destroying a throwaway cluster.
const clusterTimeout = 2 * time.Minute

// dbTimeout bounds creating or dropping one database.
const dbTimeout = 30 * time.Second

// shared is the throwaway cluster that the tests of one test binary share,
// started by the first DatabaseURL and destroyed by Main. It is the package's
// only mutable state.
var shared struct {
	mu      sync.Mutex
	managed bool // Main runs the tests, and will destroy the cluster after them
	tried   bool // a start was attempted; err says how it went
	err     error
	cluster *pgcluster.Cluster
	destroy func(context.Context) error
}

// Main runs the tests, then destroys the throwaway cluster they shared (if
// one was started), runs cleanups, and exits. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M, cleanups ...func()) {
	shared.mu.Lock()
	shared.managed = true
	shared.mu.Unlock()

	code := m.Run()
	for _, c := range cleanups {
		c()
	}

	shared.mu.Lock()
	destroy := shared.destroy
	shared.mu.Unlock()
	if destroy != nil {
		ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
		err := destroy(ctx)
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "testenv: destroy the shared PostgreSQL cluster: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// DatabaseURL returns the URL of a new, empty database for this test, dropped
// when the test ends.
//
// With DATABASE_URL set, the database is created on that server (as the
// user and through the database the variable names). Otherwise it is created
// on a throwaway cluster that the tests of this binary share, started by the
// first call; the package's TestMain must call Main, which removes it.
// Without PostgreSQL's server binaries the test fails, saying how to install them.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	server := os.Getenv(EnvDatabaseURL)
	if server == "" {
		server = sharedClusterURL(t)
	} else if _, err := pgx.ParseConfig(server); err != nil {
		t.Fatalf("%s: %v", EnvDatabaseURL, err)
	}

	name := "jetsaga_test_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	if err := execOn(ctx, server, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
		defer cancel()
		// FORCE ends the sessions a test left open (PostgreSQL 13 and later).
		if err := execOn(ctx, server, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})

	u, err := withDatabase(server, name)
	if err != nil {
		t.Fatalf("%s: %v", EnvDatabaseURL, err)
	}
	return u
}

// sharedClusterURL returns the URL of the "postgres" database of the
// throwaway cluster the test binary shares, starting it on the first call.
func sharedClusterURL(t testing.TB) string {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.managed {
		t.Fatalf("testenv.DatabaseURL without %s needs the package's TestMain to call testenv.Main(m), which removes the throwaway PostgreSQL cluster after the tests: add\n\tfunc TestMain(m *testing.M) { testenv.Main(m) }", EnvDatabaseURL)
	}
	if !shared.tried {
		shared.tried = true
		began := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
		shared.cluster, shared.destroy, shared.err = newThrowawayCluster(ctx)
		cancel()
		if shared.err == nil {
			t.Logf("testenv: started the shared PostgreSQL cluster in %v: %s (data in %s)",
				time.Since(began).Round(time.Millisecond), shared.cluster.URL("postgres"), shared.cluster.Dir)
		}
	}
	if shared.err != nil {
		t.Fatalf("start the shared PostgreSQL cluster: %v", shared.err)
	}
	return shared.cluster.URL("postgres")
}

// StartPostgres starts a throwaway cluster for this test alone, for tests
// that stop, crash or restart PostgreSQL. It is stopped (mode immediate) and
// removed when the test ends, or, should the test binary die first, by a
// watchdog process. Without the server binaries the test fails, saying how
// to install them.
func StartPostgres(t testing.TB) *pgcluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	c, destroy, err := newThrowawayCluster(ctx)
	if err != nil {
		t.Fatalf("start a PostgreSQL cluster: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
		defer cancel()
		if err := destroy(ctx); err != nil {
			t.Errorf("destroy PostgreSQL cluster: %v", err)
		}
	})
	return c
}

// newThrowawayCluster makes, in a new directory jetsaga-pg-* under the
// system's temporary directory, a fast cluster on a free port, and starts it.
// destroy stops and removes it; a watchdog does the same if this process
// dies first.
func newThrowawayCluster(ctx context.Context) (c *pgcluster.Cluster, destroy func(context.Context) error, err error) {
	if _, err := pgcluster.FindBin(); err != nil {
		return nil, nil, err
	}
	// Under os.TempDir(), not t.TempDir(): when the tests run as root, the
	// server runs as the postgres user, who cannot enter root's 0700 test
	// directories. Init gives this empty directory to that user.
	dir, err := os.MkdirTemp("", "jetsaga-pg-*")
	if err != nil {
		return nil, nil, fmt.Errorf("make cluster directory: %w", err)
	}
	c, err = pgcluster.Init(ctx, dir, pgcluster.Options{Fast: true})
	if err != nil {
		return nil, nil, errors.Join(err, os.RemoveAll(dir))
	}
	destroy, err = c.DestroyOnExit(dir)
	if err != nil {
		return nil, nil, errors.Join(err, os.RemoveAll(dir))
	}
	if err := c.Start(ctx); err != nil {
		return nil, nil, errors.Join(err, destroy(context.WithoutCancel(ctx)))
	}
	return c, destroy, nil
}

// execOn runs one statement through a new connection to server.
func execOn(ctx context.Context, server, sql string) error {
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns server, a URL or a keyword/value connection string,
// with its database replaced by db.
func withDatabase(server, db string) (string, error) {
	if strings.HasPrefix(server, "postgres://") || strings.HasPrefix(server, "postgresql://") {
		u, err := url.Parse(server)
		if err != nil {
			return "", err
		}
		u.Path = "/" + db
		u.RawPath = ""
		q := u.Query()
		if q.Has("dbname") { // libpq lets a query parameter name the database too
			q.Set("dbname", db)
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	// In a keyword/value string the last setting wins.
	return server + " dbname=" + db, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
