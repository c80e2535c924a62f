package e2e_test

// One test per failure window (issue: failure injection). Each runs its
// window deterministically — the fault at P=1 for its first occurrence, then
// off — and asserts docs/DESIGN.md's invariants 1-5 afterwards with jetsaga check.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/fault"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// A consumer service exits (code 3) after its handler committed and before
// the ack. Restarted without the fault, it gets the message again after
// AckWait; the inbox turns it into a no-op and the saga completes with one
// effect.
func TestCrashAfterCommitBeforeAck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		service  string
		consumer string
		// committed reports that the crashed handler's transaction stands.
		committed string
	}{
		{"inventory", "inventory-orders", `SELECT count(*)::text FROM inventory.reservations WHERE order_id = $1`},
		// Payment's first commit for an order is what it learns from the
		// order.created (payment-orders), which precedes the charge.
		{"payment", "payment-orders", `SELECT count(*)::text FROM payment.orders WHERE order_id = $1`},
		{"order", "order-", `SELECT (status <> 'PENDING')::int::text FROM orders.orders WHERE order_id = $1`},
		{"readmodel", "readmodel-", `SELECT count(*)::text FROM readmodel.order_views WHERE order_id = $1`},
	} {
		t.Run(tc.service, func(t *testing.T) {
			t.Parallel()
			pw := newProcWorld(t)
			w := pw.asWorld()
			var id string
			if tc.service == "order" {
				// The order service's relay publishes order.created before
				// its consumers get anything, and the flag covers the relay
				// too: place the order first, with inventory down so the
				// saga waits, then restart order with the fault.
				pw.start("order")
				pw.start("payment")
				pw.start("readmodel")
				id = w.place("c1", item{"sku-a", 1, 700})
				testenv.WaitFor(t, 10*time.Second, "order.created published", func() bool {
					return w.scalar(`SELECT count(*)::text FROM orders.outbox`) == "0" && len(w.events(id)[stream.Orders]) == 1
				})
				pw.stop("order")
				pw.start("order", "--inject-crash-after-commit=1", "--inject-limit=1")
				pw.start("inventory")
			} else {
				pw.startAll(tc.service, "--inject-crash-after-commit=1", "--inject-limit=1")
				id = w.place("c1", item{"sku-a", 1, 700})
			}

			if code := pw.waitExit(tc.service, 30*time.Second); code != fault.CrashExitCode {
				t.Fatalf("%s exited with %d, want the injected crash's %d", tc.service, code, fault.CrashExitCode)
			}
			if got := w.scalar(tc.committed, id); got != "1" {
				t.Fatalf("the crashed handler's commit is not there (%s)", got)
			}
			pw.start(tc.service)
			w.waitTerminal(id)
			w.checkInvariants()
			// The redelivered message met the inbox.
			if dups := pw.metric(tc.service, "jetsaga_messages_total", `outcome="duplicate"`, `consumer="`+tc.consumer); dups < 1 {
				t.Fatalf("%s saw no duplicate after its restart: the committed message was not redelivered", tc.service)
			}
			if got := w.orderStatus(id); got != "CONFIRMED/" {
				t.Fatalf("order %s", got)
			}
		})
	}
}

// A handler process exits right before its commit: nothing of it stands, and
// the redelivered message is handled in full after the restart.
func TestCrashBeforeCommit(t *testing.T) {
	t.Parallel()
	pw := newProcWorld(t)
	pw.startAll("inventory", "--inject-crash-before-commit=1", "--inject-limit=1")
	w := pw.asWorld()
	id := w.place("c1", item{"sku-a", 3, 100})
	if code := pw.waitExit("inventory", 30*time.Second); code != fault.CrashExitCode {
		t.Fatalf("inventory exited with %d, want %d", code, fault.CrashExitCode)
	}
	if got := w.scalar(`SELECT count(*)::text FROM inventory.reservations WHERE order_id = $1`, id); got != "0" {
		t.Fatalf("a reservation exists although the crash came before the commit (%s)", got)
	}
	if got := w.stock("sku-a"); got != "100/100/0/0" {
		t.Fatalf("stock moved without a commit: %s", got)
	}
	pw.start("inventory")
	w.waitTerminal(id)
	w.checkInvariants()
	if got := w.stock("sku-a"); got != "100/97/0/3" {
		t.Fatalf("stock = %s, want 100/97/0/3", got)
	}
}

// The relay exits after JetStream acked a publish and before it deleted the
// outbox rows. Restarted, it publishes the same event id again; the stream
// keeps one copy and the saga has one effect.
func TestRelayCrashAfterPublishBeforeDelete(t *testing.T) {
	t.Parallel()
	pw := newProcWorld(t)
	// The order service's first window is its relay publishing
	// order.created: no consumer of it has a message yet.
	pw.startAll("order", "--inject-crash-after-commit=1", "--inject-limit=1")
	w := pw.asWorld()
	// The relay publishes the order.created the request committed, and may
	// crash before the 202 is written: the answer may be cut short, the
	// order is placed either way.
	_, _ = w.post("relay-crash", "c1", []item{{"sku-a", 2, 300}})
	if code := pw.waitExit("order", 30*time.Second); code != fault.CrashExitCode {
		t.Fatalf("order exited with %d, want %d", code, fault.CrashExitCode)
	}
	id := w.scalar(`SELECT order_id FROM orders.orders WHERE idempotency_key = 'relay-crash'`)
	if got := w.scalar(`SELECT count(*)::text FROM orders.outbox WHERE order_id = $1`, id); got != "1" {
		t.Fatalf("outbox rows of the order after the crash = %s, want 1 (published, not deleted)", got)
	}
	if got := len(w.events(id)[stream.Orders]); got != 1 {
		t.Fatalf("ORDERS holds %d events of the order after the crash, want order.created once", got)
	}
	pw.start("order")
	w.waitTerminal(id)
	w.checkInvariants()
	w.wantSequence(id, map[string][]event.Type{
		stream.Orders:    {event.OrderCreated, event.OrderConfirmed},
		stream.Inventory: {event.InventoryReserved},
		stream.Payments:  {event.PaymentCompleted},
	})
	if republished := pw.metric("order", "jetsaga_outbox_published_total", `event_type="order.created"`); republished != 1 {
		t.Fatalf("the restarted relay published order.created %v times, want 1 (the republish)", republished)
	}
}

// Every relay publishes every event twice with the same id, inside the
// duplicate window: the streams keep each event once. (The same id past the
// window is TestEveryEventDeliveredTwiceHasOneEffect.)
func TestDuplicatePublishInsideWindow(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{
		seedStock:        map[string]int{"sku-a": 100, "sku-scarce": 1},
		declineOverCents: declineOver,
		faults:           fault.Config{DuplicatePublish: 1},
	})
	ids := []string{
		w.place("c1", item{"sku-a", 1, 100}),
		w.place("c2", item{"sku-a", 2, 6000}),
		w.place("c3", item{"sku-scarce", 5, 100}),
	}
	w.waitTerminal(ids...)
	w.checkInvariants()
	for _, id := range ids {
		for name, es := range w.events(id) {
			seen := map[string]bool{}
			for _, e := range es {
				if seen[e.ID] {
					t.Fatalf("%s holds event %s twice", name, e.ID)
				}
				seen[e.ID] = true
			}
		}
	}
}

// Every service Naks every message it handled instead of acking it, so
// JetStream redelivers every event type once more: each second delivery is a
// duplicate, and nothing happens twice.
func TestRedeliveryOfEveryEventType(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{
		seedStock:        map[string]int{"sku-a": 100, "sku-scarce": 1},
		declineOverCents: declineOver,
		faults:           fault.Config{Redeliver: 1},
	})
	ids := []string{
		w.place("c1", item{"sku-a", 1, 100}),
		w.place("c2", item{"sku-a", 2, 6000}),
		w.place("c3", item{"sku-scarce", 5, 100}),
	}
	ids = append(ids, w.placeTimedOutAfterCharge("c4", item{"sku-a", 1, 300}))
	w.waitTerminal(ids...)
	w.checkInvariants()
	duplicates := map[string]float64{}
	for _, name := range serviceNames {
		resp, err := http.Get(w.url(name) + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		metrics, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range event.Types() {
			duplicates[string(typ)] += sumCounter(t, bytes.NewReader(metrics), "jetsaga_messages_total", `outcome="duplicate"`, `event_type="`+string(typ)+`"`)
		}
	}
	for _, typ := range event.Types() {
		if duplicates[string(typ)] < 1 {
			t.Errorf("no redelivered %s met an inbox", typ)
		}
	}
}

// Everything transient at once, in-process: duplicate publishes, redeliveries,
// handler errors and a delay. Every saga completes and the invariants hold.
func TestTransientFaultsTogether(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{
		seedStock:        map[string]int{"sku-a": 1000, "sku-b": 1000, "sku-scarce": 3},
		declineOverCents: declineOver,
		faults:           fault.Config{DuplicatePublish: 0.3, Redeliver: 0.3, HandlerError: 0.3, Delay: time.Millisecond, Seed: 42},
		// A third of all deliveries fail and each failure waits longer: at
		// the default cap (30s) a message still being retried when the
		// sagas end can outlast the check's wait for quiet.
		retryMax: 2 * time.Second,
		// Every delivery fails with a chance of 0.3 whatever the message,
		// so at the default budget of 10 deliveries some message of the
		// run's few hundred failed all ten now and then and was
		// dead-lettered (a CI run did): with 30, never in practice
		// (0.3^30 per message).
		maxDeliver: 30,
	})
	var ids []string
	for i := range 30 {
		items := []item{{"sku-a", 1 + i%3, int64(500 * (i + 1))}}
		if i%5 == 0 {
			items = append(items, item{"sku-scarce", 1, 100})
		}
		ids = append(ids, w.place(fmt.Sprintf("c%d", i), items...))
	}
	// A third of all deliveries fail, and each failure backs off longer
	// (up to retryMax): a saga of nine handlings in five services can take
	// a while.
	w.waitTerminalWithin(4*time.Minute, ids...)
	w.checkInvariants()
}

// The NATS server goes away for a few seconds in the middle of the sagas and
// comes back on the same store: the services reconnect, orders taken
// meanwhile wait in the outbox, and every saga completes.
func TestNATSOutageMidSaga(t *testing.T) {
	t.Parallel()
	w := defaultWorld(t)
	var ids []string
	for i := range 10 {
		ids = append(ids, w.place(fmt.Sprintf("c%d", i), item{"sku-a", 1, 100}))
	}
	w.nats.Stop()
	// Orders are still accepted: they wait in the order service's outbox.
	for i := range 10 {
		ids = append(ids, w.place(fmt.Sprintf("d%d", i), item{"sku-b", 1, 100}))
	}
	outage := time.NewTimer(3 * time.Second) // the outage itself, not a synchronisation
	<-outage.C
	w.nats.Restart(t)
	w.waitTerminal(ids...)
	w.checkInvariants()
}

// Postgres restarts (pg_ctl restart) in the middle of the sagas: pools
// reconnect, failed handlers are retried, and every saga completes.
func TestPostgresRestartMidSaga(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	if err := pg.CreateDatabase(t.Context(), "saga"); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, worldOptions{
		seedStock:        map[string]int{"sku-a": 100, "sku-b": 100},
		declineOverCents: declineOver,
		dbURL:            pg.URL("saga"),
	})
	var ids []string
	for i := range 10 {
		ids = append(ids, w.place(fmt.Sprintf("c%d", i), item{"sku-a", 1, int64(1000 * (i + 1))}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// The order service may answer 500 while its pool reconnects: retry
	// with the same idempotency key, so each order is placed once.
	for i := range 10 {
		ids = append(ids, w.placeRetrying(fmt.Sprintf("after-restart-%d", i), "d", item{"sku-b", 1, 100}))
	}
	w.waitTerminal(ids...)
	w.checkInvariants()
}

// A handler that keeps failing is retried with backoff and dead-lettered by
// the service after --max-deliver deliveries; JetStream itself has no limit
// (MaxDeliver -1), so it never drops a message silently, e.g. one whose
// deliveries were burned by crashes.
func TestKeepsFailingIsDeadLetteredAfterMaxDeliver(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{
		seedStock:  map[string]int{"sku-a": 10},
		faultsFor:  map[string]fault.Config{"inventory": {HandlerError: 1}},
		maxDeliver: 3,
	})
	id := w.place("c1", item{"sku-a", 1, 100})
	var letter *jetstream.RawStreamMsg
	testenv.WaitFor(t, 30*time.Second, "order.created dead-lettered by inventory", func() bool {
		for _, m := range w.streamMsgs(stream.DLQ) {
			if m.Header.Get(consume.HeaderDLQSubject) == event.Subject(event.OrderCreated, id) {
				letter = m
				return true
			}
		}
		return false
	})
	if got := letter.Header.Get(consume.HeaderDLQDeliveries); got != "3" {
		t.Fatalf("dead-lettered after %s deliveries, want 3", got)
	}
	if !strings.Contains(letter.Header.Get(consume.HeaderDLQError), fault.ErrInjected.Error()) {
		t.Fatalf("dead letter error = %q", letter.Header.Get(consume.HeaderDLQError))
	}
	info, err := w.js.Consumer(t.Context(), stream.Orders, "inventory-orders")
	if err != nil {
		t.Fatal(err)
	}
	ci := info.CachedInfo()
	if ci.Config.MaxDeliver != -1 {
		t.Fatalf("inventory-orders MaxDeliver = %d, want -1 (the service dead-letters)", ci.Config.MaxDeliver)
	}
	testenv.WaitFor(t, 10*time.Second, "the dead-lettered message terminated", func() bool {
		ci, err := info.Info(t.Context())
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
	})
	if got := w.scalar(`SELECT count(*)::text FROM inventory.reservations WHERE order_id = $1`, id); got != "0" {
		t.Fatalf("reservations = %s, want none", got)
	}
}
