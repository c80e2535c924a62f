package trace_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
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

// sameShard returns n UUIDv7 order ids that share a shard, minted now (or at
// the time given).
func sameShard(t *testing.T, n int, at time.Time) []string {
	t.Helper()
	var ids []string
	shard := ""
	for len(ids) < n {
		id := uuidV7At(t, at)
		if shard == "" {
			shard = event.Shard(id)
		}
		if event.Shard(id) == shard {
			ids = append(ids, id)
		}
	}
	return ids
}

// uuidV7At mints a UUIDv7 whose time is at.
func uuidV7At(t *testing.T, at time.Time) string {
	t.Helper()
	u, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	ms := uint64(at.UnixMilli())
	for i := range 6 {
		u[i] = byte(ms >> (40 - 8*i))
	}
	return u.String()
}

// Subjects name a shard, not an order: other orders' events share them, and
// the trace keeps only the order's own, by its Jetsaga-Order-Id header.
func TestLoadKeepsOnlyTheOrderOfItsShard(t *testing.T) {
	t.Parallel()
	ctx, js := setup(t)
	ids := sameShard(t, 4, time.Now())
	me, others := ids[0], ids[1:]
	// Interleaved: each event of the order between other orders' events on
	// the same subjects.
	sagas := map[string][]event.Event{}
	for _, id := range ids {
		sagas[id] = confirmedSaga(t, id)
	}
	for i := range 4 {
		for _, id := range ids {
			publish(ctx, t, js, sagas[id][i].Msg())
		}
	}
	s, err := js.Stream(ctx, stream.Orders)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("order.created."+event.Shard(me)))
	if err != nil || info.State.Subjects["order.created."+event.Shard(me)] != 4 {
		t.Fatalf("the shard's order.created holds %v (%v), want the 4 orders'", info.State.Subjects, err)
	}

	hops, err := trace.Load(ctx, js, me)
	if err != nil {
		t.Fatal(err)
	}
	if len(hops) != 4 {
		t.Fatalf("%d hops, want the order's 4 events: %+v", len(hops), hops)
	}
	for i, h := range hops {
		if want := sagas[me][i]; h.EventID != want.ID || h.OrderID != me || h.Subject != want.Subject() || h.Depth != i {
			t.Errorf("hop %d = %s %s of %s depth %d, want %s %s", i, h.Type, h.EventID, h.OrderID, h.Depth, want.Type, want.ID)
		}
	}
	for _, o := range others {
		if hops, err := trace.Load(ctx, js, o); err != nil || len(hops) != 4 || hops[0].EventID != sagas[o][0].ID {
			t.Errorf("trace of %s, in the same shard: %d hops, %v", o, len(hops), err)
		}
	}
	var b bytes.Buffer
	trace.Write(&b, hops)
	if first := strings.SplitN(b.String(), "\n", 2)[0]; !strings.HasPrefix(first, "saga "+me+": 4 events") {
		t.Errorf("summary %q names another order", first)
	}
}

// History written before subjects were sharded is on <type>.<order id>: a
// trace reads it with the new events, and not a neighbour's.
func TestLoadReadsLegacySubjects(t *testing.T) {
	t.Parallel()
	ctx, js := setup(t)
	ids := sameShard(t, 2, time.Now())
	me, neighbour := ids[0], ids[1]
	saga := confirmedSaga(t, me)
	for i, e := range saga {
		m := e.Msg()
		if i < 2 { // the first half stored by an older version
			m.Subject = event.LegacySubject(e.Type, me)
		}
		publish(ctx, t, js, m)
	}
	for _, e := range confirmedSaga(t, neighbour) {
		m := e.Msg()
		m.Subject = event.LegacySubject(e.Type, neighbour)
		publish(ctx, t, js, m)
	}
	hops, err := trace.Load(ctx, js, me)
	if err != nil {
		t.Fatal(err)
	}
	if len(hops) != 4 {
		t.Fatalf("%d hops, want 4: %+v", len(hops), hops)
	}
	for i, h := range hops {
		if h.EventID != saga[i].ID {
			t.Errorf("hop %d = %s %s, want %s %s", i, h.Type, h.EventID, saga[i].Type, saga[i].ID)
		}
	}
	if !strings.HasSuffix(hops[0].Subject, "."+me) || hops[3].Subject != saga[3].Subject() {
		t.Errorf("subjects %s … %s, want the legacy one first and the sharded one last", hops[0].Subject, hops[3].Subject)
	}
}

// An order id whose time is well before its events were stored (a clock an
// hour off, or an id minted elsewhere) finds no order.created from that
// time: the trace reads the streams from the start instead, and finds it.
func TestLoadOfAnOrderWhoseClockWasOff(t *testing.T) {
	t.Parallel()
	ctx, js := setup(t)
	for _, placed := range []time.Time{time.Now().Add(-time.Hour), time.Now().Add(time.Hour)} {
		id := uuidV7At(t, placed)
		saga := confirmedSaga(t, id)
		for _, e := range saga {
			publish(ctx, t, js, e.Msg())
		}
		hops, err := trace.Load(ctx, js, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(hops) != 4 || hops[0].EventID != saga[0].ID {
			t.Errorf("order placed %v: %d hops, want its 4 events", time.Until(placed).Round(time.Minute), len(hops))
		}
	}
}

// Within reads only what was stored that long after the order was placed.
func TestLoadWithin(t *testing.T) {
	t.Parallel()
	ctx, js := setup(t)
	id := uuidV7At(t, time.Now())
	sec, nsec := uuid.MustParse(id).Time().UnixTime()
	placed := time.Unix(sec, nsec)
	saga := confirmedSaga(t, id)
	ack := publish(ctx, t, js, saga[0].Msg())
	s, err := js.Stream(ctx, stream.Orders)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := s.GetMsg(ctx, ack.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	// A window that just holds order.created; the rest is stored after it.
	within := stored.Time.Sub(placed) + time.Millisecond
	testenv.WaitFor(t, 10*time.Second, "the window to pass", func() bool { return time.Now().After(placed.Add(within + time.Millisecond)) })
	for _, e := range saga[1:] {
		publish(ctx, t, js, e.Msg())
	}

	hops, err := trace.LoadWith(ctx, js, id, trace.Options{Within: within})
	if err != nil {
		t.Fatal(err)
	}
	if len(hops) != 1 || hops[0].EventID != saga[0].ID {
		t.Errorf("within %v: %d hops, want order.created alone: %+v", within, len(hops), hops)
	}
	if hops, err := trace.Load(ctx, js, id); err != nil || len(hops) != 4 {
		t.Errorf("without a window: %d hops, %v; want 4", len(hops), err)
	}
}
