package e2e_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/pgcluster"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
	"github.com/jetsaga/jetsaga/stack"
)

// status returns the HTTP status of a GET, or 0 when it cannot connect.
func status(url string) int {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A message whose subject nearly fills nats-server's 4,096-byte control line,
// on each event stream (as an attacker with the nats CLI would publish it):
// every consumer dead-letters it on a short subject, every service stays
// connected, and later sagas complete. Before dead letters had a fixed-length
// subject, the dead letter's publish exceeded the control line, and the
// server closed the consumers' connections for good.
func TestLongSubjectsLeaveEveryServiceConnected(t *testing.T) {
	t.Parallel()
	w := defaultWorld(t)
	before := w.place("c1", item{"sku-a", 1, 100})
	w.waitTerminal(before)

	nc := w.nats.Connect(t)
	long := strings.Repeat("L", 4040)
	// Each subject and the consumers that take it: 4 + 3 + 3 dead letters.
	// The type and one long token, which the consumers' filters
	// (<type>.>) take as they take <type>.<shard>.
	poisons := []string{
		string(event.OrderCreated) + "." + long,      // inventory, payment, order, readmodel
		string(event.InventoryReserved) + "." + long, // payment, order, readmodel
		string(event.PaymentFailed) + "." + long,     // inventory, order, readmodel
	}
	for i, subj := range poisons {
		msg := nats.NewMsg(subj)
		msg.Header.Set(event.HeaderMsgID, "01a21955-0000-7000-8000-00000000000"+strconv.Itoa(i+1))
		msg.Data = []byte("x")
		if err := nc.PublishMsg(msg); err != nil { // core publish, as `nats pub` does
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 60*time.Second, "10 dead letters", func() bool { return len(w.streamMsgs(stream.DLQ)) == 10 })
	waitQuiet(t, w)
	for _, m := range w.streamMsgs(stream.DLQ) {
		if len(m.Subject) > 64 || !strings.HasPrefix(m.Subject, "dlq.") {
			t.Errorf("dead letter subject %.80q (%d bytes), want dlq.<service>.<stream>.<seq>", m.Subject, len(m.Subject))
		}
		if !strings.Contains(m.Header.Get(consume.HeaderDLQSubject), consume.TruncatedMarker) {
			t.Errorf("dead letter %s: original subject not cut with the marker", m.Subject)
		}
	}
	for _, name := range serviceNames {
		if code := status(w.url(name) + "/readyz"); code != http.StatusOK {
			t.Errorf("%s /readyz = %d after the long subjects, want 200", name, code)
		}
	}

	var after []string
	for range 5 {
		after = append(after, w.place("c1", item{"sku-b", 1, 100}))
	}
	w.waitTerminal(after...)
	for _, id := range after {
		if s := w.orderStatus(id); s != "CONFIRMED/" {
			t.Errorf("order %s after the long subjects is %s, want CONFIRMED", id, s)
		}
	}
}

// A fatal error from the server (here -ERR 'maximum control line exceeded',
// after which nats.go closes the connection and never reconnects) makes the
// service exit non-zero, and the supervisor restarts it.
func TestFatalNATSErrorExitsAndTheSupervisorRestarts(t *testing.T) {
	t.Parallel()
	bin := buildBinaries(t)
	n := testenv.StartNATS(t)
	dbURL := testenv.DatabaseURL(t)
	port, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://127.0.0.1:" + strconv.Itoa(port)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "inventory.log")
	procs := []stack.Proc{{
		Name: "inventory", Path: filepath.Join(bin, "inventory"), LogFile: logFile,
		Env: []string{"NATS_URL=" + n.URL(), "DATABASE_URL=" + dbURL, "JETSAGA_HTTP_ADDR=127.0.0.1:" + strconv.Itoa(port),
			"JETSAGA_LOG_FORMAT=json", "JETSAGA_SEED_STOCK=sku-a=1"},
	}}
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stack.Supervise(ctx, zap.New(core), procs, 20*time.Second) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("inventory log:\n%s", tail(logFile, 30))
		}
	})
	testenv.WaitFor(t, 60*time.Second, "inventory ready", func() bool { return status(addr+"/readyz") == http.StatusOK })

	// Every protocol line the service sends next (its next fetch request)
	// is longer than this.
	n.SetMaxControlLine(t, 48)
	testenv.WaitFor(t, 30*time.Second, "inventory exited non-zero and was restarted", func() bool {
		for _, e := range logs.FilterMessage("process exited; restarting").All() {
			if code, ok := e.ContextMap()["exit_code"].(int64); ok && code != 0 && code != -1 {
				return true
			}
		}
		return false
	})
	n.SetMaxControlLine(t, 0)
	testenv.WaitFor(t, 60*time.Second, "inventory ready again", func() bool { return status(addr+"/readyz") == http.StatusOK })
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "nats connection closed for good") {
		t.Errorf("the service did not log why it exited:\n%s", tail(logFile, 20))
	}
}

// /healthz fails while the service is disconnected from NATS past its grace
// period, and passes again once it reconnected.
func TestHealthzFailsWhileDisconnected(t *testing.T) {
	t.Parallel()
	w := newProcWorld(t)
	w.start("inventory", "--disconnect-grace=1s")
	if code := status(w.url("inventory") + "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d while connected", code)
	}
	w.nats.Stop()
	testenv.WaitFor(t, 30*time.Second, "/healthz failing", func() bool { return status(w.url("inventory")+"/healthz") == http.StatusServiceUnavailable })
	w.nats.Restart(t)
	testenv.WaitFor(t, 30*time.Second, "/healthz passing again", func() bool { return status(w.url("inventory")+"/healthz") == http.StatusOK })
	testenv.WaitFor(t, 30*time.Second, "/readyz passing again", func() bool { return status(w.url("inventory")+"/readyz") == http.StatusOK })
}
