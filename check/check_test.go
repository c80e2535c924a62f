package check_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func run(t *testing.T, w *world, opt check.Options) check.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := check.Run(ctx, w.check, w.js, opt)
	if err != nil {
		t.Fatalf("check.Run: %v", err)
	}
	return rep
}

func written(rep check.Report) string {
	var b bytes.Buffer
	rep.Write(&b)
	return b.String()
}

func TestConsistentWorldPasses(t *testing.T) {
	t.Parallel()
	for _, l := range layouts {
		t.Run(string(l), func(t *testing.T) {
			t.Parallel()
			testConsistentWorldPasses(t, newWorldIn(t, l))
		})
	}
}

func testConsistentWorldPasses(t *testing.T, w *world) {
	rep := run(t, w, check.Options{Deadline: deadline})
	out := written(rep)
	t.Logf("report:\n%s", out)
	if !rep.OK() || len(rep.Failed()) != 0 {
		t.Fatalf("a consistent world fails the check:\n%s", out)
	}
	if len(rep.Results) != 5 {
		t.Fatalf("%d results, want 5", len(rep.Results))
	}
	for i, res := range rep.Results {
		if res.Invariant != i+1 || res.Name == "" || !res.OK || res.Count != 0 || len(res.Violations) != 0 {
			t.Errorf("result %d: %+v", i, res)
		}
	}

	wantOrders := map[string]int{}
	wantMsgs := map[string]uint64{}
	for _, o := range orders {
		wantOrders[o.status]++
		for _, e := range w.events[o.id] {
			wantMsgs[e.Type.Stream()]++
		}
	}
	wantMsgs[stream.DLQ] = 0
	if fmt.Sprint(rep.Orders) != fmt.Sprint(wantOrders) {
		t.Errorf("Orders = %v, want %v", rep.Orders, wantOrders)
	}
	if fmt.Sprint(rep.Streams) != fmt.Sprint(wantMsgs) {
		t.Errorf("Streams = %v, want %v", rep.Streams, wantMsgs)
	}
	if rep.DLQ != 0 || rep.Deadline != deadline {
		t.Errorf("DLQ %d, Deadline %v", rep.DLQ, rep.Deadline)
	}

	for _, want := range []string{
		"orders: 6 (1 RESERVED, 2 CONFIRMED, 3 CANCELLED)\n",
		fmt.Sprintf("messages: ORDERS %d, INVENTORY %d, PAYMENTS %d, DLQ 0\n", wantMsgs[stream.Orders], wantMsgs[stream.Inventory], wantMsgs[stream.Payments]),
		"\n1 PASS every order older than 1h0m0s is terminal (order service and read model)\n",
		"\n2 PASS stock adds up per SKU",
		"\n5 PASS the read model agrees with the order service",
		"\nOK: all 5 invariants hold",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestDeadline: an order still in flight passes while younger than the
// deadline, and fails invariant 1 (only) when every order must be settled.
func TestDeadline(t *testing.T) {
	t.Parallel()
	for _, l := range layouts {
		t.Run(string(l), func(t *testing.T) {
			t.Parallel()
			testDeadline(t, newWorldIn(t, l))
		})
	}
}

func testDeadline(t *testing.T, w *world) {
	rep := run(t, w, check.Options{})
	if got := rep.Failed(); !slices.Equal(got, []int{1}) {
		t.Fatalf("failed invariants %v, want [1]:\n%s", got, written(rep))
	}
	res := rep.Results[0]
	if res.Count != 1 || !strings.Contains(res.Violations[0], "o-young") ||
		!strings.Contains(res.Violations[0], "RESERVED in the order service") ||
		!strings.Contains(res.Violations[0], "RESERVED in the read model") {
		t.Fatalf("invariant 1: %+v", res)
	}
	if !strings.Contains(written(rep), "1 FAIL every order older than 0s is terminal (order service and read model) (1 violation)\n    order o-young: ") {
		t.Errorf("report:\n%s", written(rep))
	}
	if rep.InFlightCount != 0 {
		t.Errorf("with deadline 0 nothing is in flight, got %v", rep.InFlight)
	}

	// With jetsaga check's default deadline the young order passes and is
	// listed as in flight instead.
	rep = run(t, w, check.Options{Deadline: check.DefaultDeadline})
	if !rep.OK() {
		t.Fatalf("default deadline: failed invariants %v:\n%s", rep.Failed(), written(rep))
	}
	if rep.InFlightCount != 1 || !strings.Contains(rep.InFlight[0], "o-young: RESERVED in the order service, RESERVED in the read model") {
		t.Fatalf("in flight %d %v, want o-young", rep.InFlightCount, rep.InFlight)
	}
	if out := written(rep); !strings.Contains(out, "in flight: 1 order younger than 1m0s not ended yet (not a violation") {
		t.Errorf("report does not say what is in flight:\n%s", out)
	}
}

// An operator's stock adjustment (PUT /stock/{sku}: available and adjusted
// move together) keeps invariant 2; available moved alone breaks it.
func TestStockAdjustment(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.exec(t, "inventory", `UPDATE stock SET available = available + 7, adjusted = adjusted + 7 WHERE sku = 'sku-a'`)
	w.exec(t, "inventory", `UPDATE stock SET available = available - 1, adjusted = adjusted - 1 WHERE sku = 'sku-b'`)
	if rep := run(t, w, check.Options{Deadline: deadline}); !rep.OK() {
		t.Fatalf("adjusted stock fails the check:\n%s", written(rep))
	}
	w.exec(t, "inventory", `UPDATE stock SET available = available + 1 WHERE sku = 'sku-a'`)
	rep := run(t, w, check.Options{Deadline: deadline})
	if got := rep.Failed(); !slices.Equal(got, []int{2}) || !strings.Contains(written(rep), "sku sku-a: initial 10 + adjusted 7 != available") {
		t.Fatalf("failed %v, want [2] naming sku-a:\n%s", got, written(rep))
	}
}

// TestEachInvariantBroken breaks a consistent world in one place and expects
// exactly the invariant that covers it to fail, naming the culprit: with
// the four schemas in one database, and each in a database of its own.
func TestEachInvariantBroken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		invariant int
		mention   []string // in one violation
		breakIt   func(t *testing.T, w *world)
	}{
		{
			name: "an old order still PENDING", invariant: 1, mention: []string{"o-stuck", "PENDING in the order service", "PENDING in the read model"},
			breakIt: func(t *testing.T, w *world) {
				w.exec(t, "orders", `INSERT INTO orders (order_id, customer_id, items, total_cents, status, created_at)
					VALUES ('o-stuck', 'c9', '[]', 0, 'PENDING', now() - interval '3 hours')`)
				w.exec(t, "readmodel", `INSERT INTO order_views (order_id, customer_id, total_cents, status)
					VALUES ('o-stuck', 'c9', 0, 'PENDING')`)
			},
		},
		{
			name: "stock off by one", invariant: 2, mention: []string{"sku sku-a", "initial 10 + adjusted 0 != available 6 + reserved 3 + sold 3 (= 12)"},
			breakIt: func(t *testing.T, w *world) {
				w.exec(t, "inventory", `UPDATE stock SET available = available + 2 WHERE sku = 'sku-a'`)
			},
		},
		{
			name: "reserved does not match held reservations", invariant: 2, mention: []string{"sku sku-a", "reserved 4 != 3 held"},
			breakIt: func(t *testing.T, w *world) {
				w.exec(t, "inventory", `UPDATE stock SET reserved = reserved + 1, available = available - 1 WHERE sku = 'sku-a'`)
			},
		},
		{
			name: "a CANCELLED order still holds stock", invariant: 2, mention: []string{"o-declined", "CANCELLED", "HELD"},
			breakIt: func(t *testing.T, w *world) {
				w.exec(t, "inventory", `UPDATE reservations SET status = 'HELD' WHERE order_id = 'o-declined'`)
				w.exec(t, "inventory", `UPDATE stock SET available = available - 1, reserved = reserved + 1 WHERE sku = 'sku-b'`)
			},
		},
		{
			name: "a CONFIRMED order whose reservation was released", invariant: 2, mention: []string{"o-confirmed:", "RELEASED, not COMMITTED"},
			breakIt: func(t *testing.T, w *world) {
				w.exec(t, "inventory", `UPDATE reservations SET status = 'RELEASED' WHERE order_id = 'o-confirmed'`)
				w.exec(t, "inventory", `UPDATE stock SET available = available + 2, sold = sold - 2 WHERE sku = 'sku-a'`)
			},
		},
		{
			name: "a CONFIRMED order without payment", invariant: 3, mention: []string{"o-confirmed:", "without a completed payment"},
			breakIt: func(t *testing.T, w *world) {
				w.exec(t, "payment", `DELETE FROM payments WHERE order_id = 'o-confirmed'`)
			},
		},
		{
			name: "a payment of the wrong amount", invariant: 3, mention: []string{"o-confirmed-2", "total of 1500 cents", "charged 1499 cents"},
			breakIt: func(t *testing.T, w *world) {
				w.exec(t, "payment", `UPDATE payments SET amount_cents = amount_cents - 1 WHERE order_id = 'o-confirmed-2'`)
			},
		},
		{
			name: "a CANCELLED order charged", invariant: 3, mention: []string{"o-declined", "CANCELLED but charged 500 cents"},
			breakIt: func(t *testing.T, w *world) {
				w.exec(t, "payment", `UPDATE payments SET status = 'COMPLETED' WHERE order_id = 'o-declined'`)
			},
		},
		{
			name: "a payment for an unknown order", invariant: 3, mention: []string{"o-ghost", "pay-ghost"},
			breakIt: func(t *testing.T, w *world) {
				w.exec(t, "payment", `INSERT INTO payments (order_id, payment_id, amount_cents, status) VALUES ('o-ghost', 'pay-ghost', 100, 'COMPLETED')`)
			},
		},
		{
			name: "an event left in an outbox", invariant: 4, mention: []string{"o-confirmed", "payment.outbox", "payment.completed"},
			breakIt: func(t *testing.T, w *world) {
				e := newEvent(t, event.PaymentCompletedPayload{OrderID: "o-confirmed", PaymentID: "pay-2", AmountCents: 2000},
					"o-confirmed", w.event(t, "o-confirmed", event.InventoryReserved).ID, time.Now())
				w.exec(t, "payment", `INSERT INTO outbox (event_id, event_type, order_id, causation_id, occurred_at, body)
					VALUES ($1, $2, $3, $4, $5, $6)`, e.ID, string(e.Type), e.OrderID, e.CausationID, e.OccurredAt, e.Body)
			},
		},
		{
			name: "an event id twice in a stream", invariant: 4,
			breakIt: func(t *testing.T, w *world) {
				e := w.event(t, "o-oos", event.InventoryRejected)
				// Past the 100ms duplicate window the stream takes it again.
				testenv.WaitFor(t, 10*time.Second, "the stream to store a copy", func() bool {
					return !w.publish(t, e).Duplicate
				})
			},
		},
		{
			// A well-formed event on a shard that is not its order's.
			name: "an event on another shard's subject", invariant: 4,
			mention: []string{"ORDERS #", "order.confirmed." + otherShard("o-confirmed"), "not a ORDERS event on its subject", `Jetsaga-Order-Id "o-confirmed"`},
			breakIt: func(t *testing.T, w *world) {
				m := w.event(t, "o-confirmed", event.OrderConfirmed).Msg()
				m.Header.Set(event.HeaderMsgID, "01900000-0000-7000-8000-0000000000aa")
				m.Subject = "order.confirmed." + otherShard("o-confirmed")
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := w.js.PublishMsg(ctx, m); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "two events of one type for one order", invariant: 4, mention: []string{"order o-confirmed: payment.completed twice"},
			breakIt: func(t *testing.T, w *world) {
				w.publish(t, newEvent(t, event.PaymentCompletedPayload{OrderID: "o-confirmed", PaymentID: "pay-2", AmountCents: 2000},
					"o-confirmed", w.event(t, "o-confirmed", event.InventoryReserved).ID, time.Now()))
			},
		},
		{
			name: "a dead letter", invariant: 4, mention: []string{"dlq.inventory.ORDERS.7", event.Subject(event.OrderCreated, "o-oos"), "inventory-orders", "event: items[0].qty: must be 1-1000"},
			breakIt: func(t *testing.T, w *world) {
				e := w.event(t, "o-oos", event.OrderCreated)
				msg := nats.NewMsg(consume.DLQSubject("inventory", stream.Orders, 7))
				msg.Header = e.Header()
				msg.Header.Set(consume.HeaderDLQSubject, e.Subject())
				msg.Header.Set(consume.HeaderOriginalMsgID, e.ID)
				msg.Header.Set(event.HeaderMsgID, "inventory-orders-ORDERS-7")
				msg.Header.Set(consume.HeaderDLQError, "event: items[0].qty: must be 1-1000")
				msg.Header.Set(consume.HeaderDLQConsumer, "inventory-orders")
				msg.Data = e.Body
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := w.js.PublishMsg(ctx, msg); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "a dead letter that could not be published", invariant: 4,
			mention: []string{"never published", "payment.dead_letters", "INVENTORY #9", "inventory.reserved.o-x", "payment-inventory", "no responders"},
			breakIt: func(t *testing.T, w *world) {
				w.exec(t, "payment", `INSERT INTO dead_letters (consumer, stream, stream_seq, subject, deliveries, error,
					body_size, body_sha256, dlq_subject, dlq_msg_id, published, publish_error)
					VALUES ('payment-inventory', 'INVENTORY', 9, 'inventory.reserved.o-x', 1, 'decode: bad', 3, 'ab',
					'dlq.payment.INVENTORY.9', 'payment-inventory-INVENTORY-9', false, 'nats: no responders')`)
			},
		},
		{
			name: "a dead letter purged from DLQ", invariant: 4,
			mention: []string{"missing from DLQ", "orders.dead_letters", "PAYMENTS #4", "order-payments"},
			breakIt: func(t *testing.T, w *world) {
				w.exec(t, "orders", `INSERT INTO dead_letters (consumer, stream, stream_seq, subject, deliveries, error,
					body_size, body_sha256, dlq_subject, dlq_msg_id, published)
					VALUES ('order-payments', 'PAYMENTS', 4, 'payment.failed.o-y', 1, 'decode: bad', 3, 'ab',
					'dlq.order.PAYMENTS.4', 'order-payments-PAYMENTS-4', true)`)
			},
		},
		{
			name: "a message ack-pending past the bound", invariant: 4,
			mention: []string{"consumer stuck-orders on ORDERS: ORDERS #", "ack-pending"},
			breakIt: func(t *testing.T, w *world) {
				cons, err := stream.EnsureConsumer(t.Context(), w.js, stream.ConsumerConfig{
					Stream: stream.Orders, Durable: "stuck-orders", FilterSubjects: []string{"order.created.>"}, AckWait: time.Hour,
				})
				if err != nil {
					t.Fatal(err)
				}
				batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				for range batch.Messages() { // delivered, never acked
				}
				testenv.WaitFor(t, 5*time.Second, "the message awaiting its ack", func() bool {
					info, err := cons.Info(t.Context())
					return err == nil && info.NumAckPending == 1
				})
				s, err := w.js.Stream(t.Context(), stream.Orders)
				if err != nil {
					t.Fatal(err)
				}
				first, err := s.GetMsg(t.Context(), 1, jetstream.WithGetMsgSubject("order.created.>"))
				if err != nil {
					t.Fatal(err)
				}
				testenv.WaitFor(t, 5*time.Second, "the message stored longer ago than the bound", func() bool {
					return time.Since(first.Time) > ackBound
				})
			},
		},
		{
			name: "the read model disagrees on the status", invariant: 5,
			mention: []string{"o-confirmed:", "status CONFIRMED in the order service, CANCELLED in the read model", `reason "" in the order service, "payment_failed" in the read model`},
			breakIt: func(t *testing.T, w *world) {
				w.exec(t, "readmodel", `UPDATE order_views SET status = 'CANCELLED', reason = 'payment_failed' WHERE order_id = 'o-confirmed'`)
			},
		},
		{
			name: "the read model disagrees on total and customer", invariant: 5,
			mention: []string{"o-oos:", "total_cents 500 in the order service, 400 in the read model", `customer_id "c3" in the order service, "c4" in the read model`},
			breakIt: func(t *testing.T, w *world) {
				w.exec(t, "readmodel", `UPDATE order_views SET total_cents = 400, customer_id = 'c4' WHERE order_id = 'o-oos'`)
			},
		},
		{
			name: "a view of an unknown order", invariant: 5, mention: []string{"o-ghost", "does not have"},
			breakIt: func(t *testing.T, w *world) {
				w.exec(t, "readmodel", `INSERT INTO order_views (order_id, customer_id, total_cents, status) VALUES ('o-ghost', 'c1', 0, 'CONFIRMED')`)
			},
		},
	}
	for _, l := range layouts {
		for _, tt := range tests {
			t.Run(string(l)+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				w := newWorldIn(t, l)
				tt.breakIt(t, w)
				mention := tt.mention
				if mention == nil { // the duplicated event, known only now
					e := w.event(t, "o-oos", event.InventoryRejected)
					mention = []string{"event " + e.ID + " is in the streams twice: INVENTORY #", "(" + e.Subject() + ")"}
				}
				rep := run(t, w, check.Options{Deadline: deadline, AckPendingBound: ackBound})
				out := written(rep)
				t.Logf("report:\n%s", out)
				if got := rep.Failed(); !slices.Equal(got, []int{tt.invariant}) {
					t.Fatalf("failed invariants %v, want [%d]:\n%s", got, tt.invariant, out)
				}
				res := rep.Results[tt.invariant-1]
				if res.OK || res.Count != len(res.Violations) || res.Count == 0 {
					t.Errorf("result %+v", res)
				}
				if !slices.ContainsFunc(res.Violations, func(v string) bool { return containsAll(v, mention) }) {
					t.Errorf("no violation of invariant %d mentions %q:\n%s", tt.invariant, mention, out)
				}
				if !strings.Contains(out, fmt.Sprintf("\n%d FAIL ", tt.invariant)) || !strings.Contains(out, "\nFAILED: 1 of 5 invariants violated") {
					t.Errorf("report:\n%s", out)
				}
			})
		}
	}
}

// otherShard returns a shard that is not orderID's.
func otherShard(orderID string) string {
	if event.Shard(orderID) == "000" {
		return "001"
	}
	return "000"
}

// History written before subjects were sharded (<type>.<order id>) passes the
// check like any other, and the check still tells its orders apart by their
// headers: a second order.created for the order, on the sharded subject, is
// the same order's.
func TestLegacySubjects(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.legacy = true
	items := []event.Item{{SKU: "sku-x", Qty: 1, UnitPriceCents: 100}}
	w.addOrder(t, sagaOrder{id: "o-legacy", customer: "c5", items: items,
		status: "CANCELLED", reason: event.ReasonUnknownSKU, reservation: "REJECTED", age: settled})
	w.legacy = false
	if rep := run(t, w, check.Options{Deadline: deadline}); !rep.OK() {
		t.Fatalf("a world with legacy subjects fails the check:\n%s", written(rep))
	}

	w.publish(t, newEvent(t, event.OrderCreatedPayload{OrderID: "o-legacy", CustomerID: "c5", Items: items, TotalCents: 100},
		"o-legacy", "", time.Now()))
	rep := run(t, w, check.Options{Deadline: deadline})
	if got := rep.Failed(); !slices.Equal(got, []int{4}) ||
		!slices.ContainsFunc(rep.Results[3].Violations, func(v string) bool { return strings.HasPrefix(v, "order o-legacy: order.created twice") }) {
		t.Fatalf("failed %v, want 4 with order.created twice for o-legacy:\n%s", got, written(rep))
	}
}

// ackBound is the ack-pending bound of the violation tests: short, so that
// a message fetched and never acked exceeds it at once.
const ackBound = 50 * time.Millisecond

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestManyViolations: the report counts dead letters, and lists at most 20
// violations while counting them all.
func TestManyViolations(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 25
	for i := range n {
		msg := nats.NewMsg(consume.DLQSubject("payment", stream.Inventory, uint64(i+1)))
		msg.Header.Set(consume.HeaderDLQError, "boom")
		if _, err := w.js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	rep := run(t, w, check.Options{Deadline: deadline})
	res := rep.Results[3]
	if rep.DLQ != n || rep.Streams[stream.DLQ] != n || res.Count != n || len(res.Violations) != 20 {
		t.Fatalf("DLQ %d, result count %d with %d listed; want %d, %d, 20", rep.DLQ, res.Count, len(res.Violations), n, n)
	}
	if out := written(rep); !strings.Contains(out, "(25 violations)\n") || !strings.Contains(out, "\n    ... and 5 more\n") {
		t.Errorf("report:\n%s", out)
	}
}

// TestMissingTables: a database without the services' tables is an error,
// not a passing check.
func TestMissingTables(t *testing.T) {
	t.Parallel()
	pool := testenv.PoolOn(t, testenv.DatabaseURL(t), "public", nil)
	js := testenv.JetStream(t, testenv.StartNATS(t).Connect(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := check.Run(ctx, check.OneDB(pool), js, check.Options{}); err == nil || !strings.Contains(err.Error(), "orders.orders") {
		t.Fatalf("Run on an empty database: %v, want an error about orders.orders", err)
	}
}

// Messages injected on purpose (chaos --poison), and their dead letters, are
// not violations when the caller names them; they are otherwise.
func TestInjectedMessagesAreLeftOut(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ack, err := w.js.Publish(ctx, "order.created."+strings.Repeat("L", 300), []byte("\xff"))
	if err != nil {
		t.Fatal(err)
	}
	letter := nats.NewMsg(consume.DLQSubject("inventory", stream.Orders, ack.Sequence))
	letter.Header.Set(event.HeaderMsgID, consume.DLQMsgID("inventory-orders", stream.Orders, ack.Sequence))
	letter.Header.Set(consume.HeaderDLQStream, stream.Orders)
	letter.Header.Set(consume.HeaderDLQStreamSeq, fmt.Sprint(ack.Sequence))
	letter.Header.Set(consume.HeaderDLQError, "subject too long")
	if _, err := w.js.PublishMsg(ctx, letter); err != nil {
		t.Fatal(err)
	}
	w.exec(t, "readmodel", `INSERT INTO dead_letters (consumer, stream, stream_seq, subject, deliveries, error,
		body_size, body_sha256, dlq_subject, dlq_msg_id, published, publish_error)
		VALUES ('readmodel-orders', 'ORDERS', $1, 'order.created.LLL', 1, 'subject too long', 1, 'ab', 'x', 'y', false, 'timeout')`,
		int64(ack.Sequence))

	rep := run(t, w, check.Options{Deadline: deadline})
	if got := rep.Failed(); !slices.Equal(got, []int{4}) || rep.Results[3].Count != 3 {
		t.Fatalf("without Injected: failed %v with %d violations of 4, want [4] with 3 (the message, its dead letter, its record):\n%s",
			got, rep.Results[3].Count, written(rep))
	}
	rep = run(t, w, check.Options{Deadline: deadline, Injected: map[check.StreamMsg]bool{{Stream: stream.Orders, Seq: ack.Sequence}: true}})
	if !rep.OK() {
		t.Fatalf("with the message named as injected:\n%s", written(rep))
	}
}
