package trace_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
	"github.com/jetsaga/jetsaga/trace"
)

var t0 = time.Date(2026, 11, 24, 6, 0, 0, 123_000_000, time.UTC)

func setup(t *testing.T) (context.Context, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	js := testenv.JetStream(t, testenv.StartNATS(t).Connect(t))
	// A short duplicate window, so that a test can store an event twice.
	if err := stream.Ensure(ctx, js, stream.Config{Duplicates: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	return ctx, js
}

func newEvent(t *testing.T, p event.Payload, cause string, at time.Time) event.Event {
	t.Helper()
	e, err := event.New(p.EventType(), p.GetOrderID(), cause, p, at)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func publish(ctx context.Context, t *testing.T, js jetstream.JetStream, msg *nats.Msg) *jetstream.PubAck {
	t.Helper()
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatalf("publish %s: %v", msg.Subject, err)
	}
	return ack
}

// confirmedSaga returns the events of a confirmed order, in causal order:
// reserved 3.2ms after created, completed 1.1ms later, confirmed 0.7ms later.
func confirmedSaga(t *testing.T, orderID string) []event.Event {
	t.Helper()
	items := []event.Item{{SKU: "sku-1", Qty: 2, UnitPriceCents: 1999}}
	created := newEvent(t, event.OrderCreatedPayload{OrderID: orderID, CustomerID: "c1", Items: items, TotalCents: 3998}, "", t0)
	reserved := newEvent(t, event.InventoryReservedPayload{OrderID: orderID, Items: items, TotalCents: 3998}, created.ID, t0.Add(3200*time.Microsecond))
	completed := newEvent(t, event.PaymentCompletedPayload{OrderID: orderID, PaymentID: "p-1", AmountCents: 3998}, reserved.ID, t0.Add(4300*time.Microsecond))
	confirmed := newEvent(t, event.OrderConfirmedPayload{OrderID: orderID, TotalCents: 3998}, completed.ID, t0.Add(5000*time.Microsecond))
	return []event.Event{created, reserved, completed, confirmed}
}

func TestLoadOutOfOrder(t *testing.T) {
	t.Parallel()
	ctx, js := setup(t)
	saga := confirmedSaga(t, "o-1")
	created, reserved, completed, confirmed := saga[0], saga[1], saga[2], saga[3]

	// Published against causality: the confirmation first, the creation
	// after it in the same stream; other orders in between, one of which
	// has an id that o-1 is a prefix of.
	for _, e := range []event.Event{confirmed, completed} {
		publish(ctx, t, js, e.Msg())
	}
	for _, e := range confirmedSaga(t, "o-10") {
		publish(ctx, t, js, e.Msg())
	}
	for _, e := range []event.Event{created, reserved} {
		publish(ctx, t, js, e.Msg())
	}
	// A second copy of payment.completed, past the duplicate window.
	testenv.WaitFor(t, 10*time.Second, "the stream to store a copy", func() bool {
		return !publish(ctx, t, js, completed.Msg()).Duplicate
	})
	// A dead letter about o-1, and one about o-10.
	for i, id := range []string{"o-1", "o-10"} {
		msg := nats.NewMsg(consume.DLQSubject("readmodel", stream.Orders, uint64(7+i)))
		msg.Header.Set(event.HeaderOrderID, id)
		msg.Header.Set(consume.HeaderDLQSubject, event.Subject(event.OrderConfirmed, id))
		msg.Header.Set(consume.HeaderDLQError, "permanent: view of "+id+" is gone")
		msg.Header.Set(consume.HeaderDLQConsumer, "readmodel-orders")
		msg.Header.Set(consume.HeaderOriginalMsgID, confirmed.ID)
		publish(ctx, t, js, msg)
	}

	hops, err := trace.Load(ctx, js, "o-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		e       event.Event
		stream  string
		seq     uint64
		depth   int
		latency time.Duration
	}{
		{created, stream.Orders, 4, 0, 0},
		{reserved, stream.Inventory, 2, 1, 3200 * time.Microsecond},
		{completed, stream.Payments, 1, 2, 1100 * time.Microsecond},
		{confirmed, stream.Orders, 1, 3, 700 * time.Microsecond},
	}
	if len(hops) != len(want)+1 {
		t.Fatalf("%d hops, want %d events and a dead letter: %+v", len(hops), len(want), hops)
	}
	for i, w := range want {
		h := hops[i]
		if h.EventID != w.e.ID || h.Type != w.e.Type || h.CausationID != w.e.CausationID || h.Subject != w.e.Subject() ||
			h.Stream != w.stream || h.Seq != w.seq || h.Depth != w.depth || h.Latency != w.latency ||
			!h.OccurredAt.Equal(w.e.OccurredAt) || string(h.Body) != string(w.e.Body) || h.DeadLetter != "" {
			t.Errorf("hop %d = %+v\nwant %s %s #%d depth %d latency %v", i, h, w.e.Type, w.stream, w.seq, w.depth, w.latency)
		}
	}
	dead := hops[len(want)]
	if dead.Stream != stream.DLQ || dead.Subject != "dlq.readmodel.ORDERS.7" || dead.EventID != confirmed.ID ||
		dead.DeadLetter != "permanent: view of o-1 is gone" || dead.Consumer != "readmodel-orders" {
		t.Errorf("dead letter hop %+v", dead)
	}

	var b bytes.Buffer
	trace.Write(&b, hops)
	out := b.String()
	t.Logf("trace:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	wantLines := []struct{ prefix, contains string }{
		{"saga o-1: 4 events in 5ms, order.created → order.confirmed; 1 dead letter", ""},
		{"order.created ", created.ID + "  (root)  2026-11-24T06:00:00.123Z  ORDERS #4"},
		{"└ inventory.reserved ", reserved.ID + "  +3.2ms  2026-11-24T06:00:00.126Z  INVENTORY #2"},
		{"  └ payment.completed ", completed.ID + "  +1.1ms  2026-11-24T06:00:00.127Z  PAYMENTS #1"},
		{"    └ order.confirmed ", confirmed.ID + "  +700µs  2026-11-24T06:00:00.128Z  ORDERS #1"},
		{"dead letter DLQ #1 dlq.readmodel.ORDERS.7 (consumer readmodel-orders, event " + confirmed.ID + "): permanent: view of o-1 is gone", ""},
	}
	if len(lines) != len(wantLines) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(wantLines), out)
	}
	for i, w := range wantLines {
		if !strings.HasPrefix(lines[i], w.prefix) || !strings.Contains(lines[i], w.contains) {
			t.Errorf("line %d = %q, want prefix %q containing %q", i, lines[i], w.prefix, w.contains)
		}
	}
}

func TestLoadNothing(t *testing.T) {
	t.Parallel()
	ctx, js := setup(t)
	for _, e := range confirmedSaga(t, "o-10") {
		publish(ctx, t, js, e.Msg())
	}
	hops, err := trace.Load(ctx, js, "o-1")
	if err != nil || len(hops) != 0 {
		t.Fatalf("Load of an order without events: %v, %v", hops, err)
	}
	var b bytes.Buffer
	trace.Write(&b, hops)
	if b.String() != "no events for this order\n" {
		t.Errorf("Write: %q", b.String())
	}
}

func TestLoadWithoutStreams(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := testenv.JetStream(t, testenv.StartNATS(t).Connect(t))
	if hops, err := trace.Load(ctx, js, "o-1"); err != nil || len(hops) != 0 {
		t.Fatalf("Load before any stream exists: %v, %v", hops, err)
	}
}

func TestLoadRejectsBadOrderIDs(t *testing.T) {
	t.Parallel()
	ctx, js := setup(t)
	for _, id := range []string{"", "*", ">", "o.1", "o 1", strings.Repeat("x", 65)} {
		if _, err := trace.Load(ctx, js, id); err == nil {
			t.Errorf("Load(%q): no error", id)
		}
	}
}
