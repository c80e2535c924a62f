package testenv_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestNATSRestartKeepsStream(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     "TEST",
		Subjects: []string{"test.>"},
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	for i := 1; i <= 3; i++ {
		ack, err := js.Publish(ctx, fmt.Sprintf("test.%d", i), []byte("hello"))
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if ack.Sequence != uint64(i) {
			t.Fatalf("publish %d: sequence %d", i, ack.Sequence)
		}
	}

	url := n.URL()
	n.Stop()
	if n.Server() != nil {
		t.Fatal("Server() is not nil after Stop")
	}
	testenv.WaitFor(t, 5*time.Second, "the client to notice the server is gone", func() bool { return !nc.IsConnected() })
	n.Restart(t)
	if n.URL() != url {
		t.Fatalf("URL changed across restart: %s, then %s", url, n.URL())
	}
	if n.Server() == nil || !n.Server().JetStreamEnabled() {
		t.Fatal("no JetStream server after Restart")
	}
	testenv.WaitFor(t, 5*time.Second, "the client to reconnect", nc.IsConnected)

	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatalf("stream info after restart: %v", err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("stream holds %d messages after restart, want 3", info.State.Msgs)
	}
	ack, err := js.Publish(ctx, "test.4", []byte("after restart"))
	if err != nil {
		t.Fatalf("publish after restart: %v", err)
	}
	if ack.Sequence != 4 {
		t.Fatalf("publish after restart: sequence %d, want 4", ack.Sequence)
	}

	// Restart of a running server works too. The client may not have
	// noticed the restart yet when Restart returns, so wait for its
	// reconnect count to move, and ask until the stream answers.
	reconnects := nc.Reconnects
	n.Restart(t)
	testenv.WaitFor(t, 10*time.Second, "the client to reconnect", func() bool {
		return nc.Stats().Reconnects > reconnects && nc.IsConnected()
	})
	testenv.WaitFor(t, 10*time.Second, "the stream to answer with 4 messages after a second restart", func() bool {
		ictx, icancel := context.WithTimeout(ctx, time.Second)
		defer icancel()
		info, err := stream.Info(ictx)
		return err == nil && info.State.Msgs == 4
	})
}

func TestNATSSyncAlways(t *testing.T) {
	t.Parallel()
	for _, syncAlways := range []bool{false, true} {
		n := testenv.StartNATSWith(t, testenv.NATSOptions{SyncAlways: syncAlways})
		if got := n.Server().JetStreamConfig().SyncAlways; got != syncAlways {
			t.Errorf("SyncAlways: %v, want %v", got, syncAlways)
		}
	}
}

func TestNATSServersAreSeparate(t *testing.T) {
	t.Parallel()
	a, b := testenv.StartNATS(t), testenv.StartNATS(t)
	if a.URL() == b.URL() || a.StoreDir() == b.StoreDir() {
		t.Fatalf("two servers share a port or store: %s %s, %s %s", a.URL(), a.StoreDir(), b.URL(), b.StoreDir())
	}
}

func TestDatabaseURLGivesFreshDatabases(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	began := time.Now()
	urlA := testenv.DatabaseURL(t)
	t.Logf("first DatabaseURL took %v", time.Since(began).Round(time.Millisecond))
	began = time.Now()
	urlB := testenv.DatabaseURL(t)
	t.Logf("second DatabaseURL took %v", time.Since(began).Round(time.Millisecond))
	if urlA == urlB {
		t.Fatalf("two calls gave the same URL %s", urlA)
	}

	a := connect(ctx, t, urlA)
	b := connect(ctx, t, urlB)
	nameA, nameB := currentDatabase(ctx, t, a), currentDatabase(ctx, t, b)
	if nameA == nameB {
		t.Fatalf("both URLs lead to database %s", nameA)
	}
	if !strings.HasPrefix(nameA, "jetsaga_test_") {
		t.Errorf("database name %q lacks the jetsaga_test_ prefix", nameA)
	}
	for _, c := range []*pgx.Conn{a, b} {
		if n := tableCount(ctx, t, c); n != 0 {
			t.Fatalf("a fresh database holds %d tables", n)
		}
	}

	if _, err := a.Exec(ctx, "CREATE TABLE only_in_a (id int)"); err != nil {
		t.Fatal(err)
	}
	if n := tableCount(ctx, t, a); n != 1 {
		t.Fatalf("database A holds %d tables after CREATE TABLE, want 1", n)
	}
	if n := tableCount(ctx, t, b); n != 0 {
		t.Fatalf("database B holds %d tables after CREATE TABLE in A, want 0", n)
	}
}

func TestDatabaseURLParallel(t *testing.T) {
	t.Parallel()
	const n = 8
	urls := make(chan string, n)
	for i := range n {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			url := testenv.DatabaseURL(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c := connect(ctx, t, url)
			if _, err := c.Exec(ctx, "CREATE TABLE t (id int)"); err != nil {
				t.Fatal(err)
			}
			urls <- url
		})
	}
	t.Cleanup(func() { // after the parallel subtests
		close(urls)
		seen := map[string]bool{}
		for u := range urls {
			if seen[u] {
				t.Errorf("URL %s given twice", u)
			}
			seen[u] = true
		}
	})
}

func TestStartPostgresSurvivesRestartAndCrash(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	began := time.Now()
	c := testenv.StartPostgres(t)
	t.Logf("StartPostgres took %v", time.Since(began).Round(time.Millisecond))
	url := c.URL("postgres")
	{
		conn := connect(ctx, t, url)
		if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('row')"); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
	}
	wantRow := func(when string) {
		t.Helper()
		conn := connect(ctx, t, url)
		defer conn.Close(ctx)
		var v string
		if err := conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != "row" {
			t.Fatalf("%s: read the row back: %q, %v", when, v, err)
		}
	}

	began = time.Now()
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Restart took %v", time.Since(began).Round(time.Millisecond))
	if c.URL("postgres") != url {
		t.Fatalf("URL changed across restart: %s, then %s", url, c.URL("postgres"))
	}
	wantRow("after restart")

	began = time.Now()
	if err := c.Stop(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	if running, err := c.Running(ctx); err != nil || running {
		t.Fatalf("after Stop: running %v, err %v", running, err)
	}
	if conn, err := pgx.Connect(ctx, url); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Stop immediate + Start (crash recovery) took %v", time.Since(began).Round(time.Millisecond))
	wantRow("after an immediate stop and a start")
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	t.Run("true at once", func(t *testing.T) {
		calls := 0
		testenv.WaitFor(t, time.Second, "nothing", func() bool { calls++; return true })
		if calls != 1 {
			t.Fatalf("cond called %d times, want 1", calls)
		}
	})
	t.Run("true later", func(t *testing.T) {
		became := time.Now().Add(150 * time.Millisecond)
		testenv.WaitFor(t, 5*time.Second, "the time", func() bool { return time.Now().After(became) })
		if late := time.Since(became); late > 250*time.Millisecond {
			t.Fatalf("noticed %v late; polling should be at most 200ms apart", late)
		}
	})
	t.Run("never true", func(t *testing.T) {
		ft := &fatalRecorder{TB: t}
		began := time.Now()
		calls := 0
		ft.run(func() {
			testenv.WaitFor(ft, 300*time.Millisecond, "the impossible", func() bool { calls++; return false })
		})
		took := time.Since(began)
		if !strings.Contains(ft.fatal, "the impossible") || !strings.Contains(ft.fatal, "timed out") {
			t.Fatalf("Fatalf message %q, want one about a timeout and the impossible", ft.fatal)
		}
		if took < 300*time.Millisecond || took > time.Second {
			t.Fatalf("gave up after %v, want about 300ms", took)
		}
		if calls < 4 {
			t.Fatalf("cond called %d times in 300ms", calls)
		}
	})
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends the goroutine.
type fatalRecorder struct {
	testing.TB
	fatal string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fatalRecorder) run(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

func connect(ctx context.Context, t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func currentDatabase(ctx context.Context, t *testing.T, c *pgx.Conn) string {
	t.Helper()
	var name string
	if err := c.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

func tableCount(ctx context.Context, t *testing.T, c *pgx.Conn) int {
	t.Helper()
	var n int
	err := c.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
