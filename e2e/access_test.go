package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/access"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
	"github.com/jetsaga/jetsaga/trace"
)

// identityWorld is the saga on a NATS server that knows only the dev
// identities of deploy/nats/identities: every service runs as itself.
func identityWorld(t *testing.T) *world {
	return newWorld(t, worldOptions{
		seedStock:        map[string]int{"sku-a": 100, "sku-b": 100, "sku-scarce": 1},
		declineOverCents: declineOver,
		identities:       true,
	})
}

// Every service under its own identity, streams made by the operator,
// check and trace as the reader: every path of the saga completes and the
// invariants hold. A durable a service has and its identity does not allow
// would keep that service from starting.
func TestSagaUnderPerServiceIdentities(t *testing.T) {
	t.Parallel()
	w := identityWorld(t)
	ids := []string{
		w.place("c1", item{"sku-a", 2, 1999}),
		w.place("c2", item{"sku-b", 3, 5000}), // declined
		w.place("c3", item{"sku-scarce", 2, 100}),
	}
	w.waitTerminal(ids...)
	for id, want := range map[string]string{ids[0]: "CONFIRMED/", ids[1]: "CANCELLED/payment_failed", ids[2]: "CANCELLED/out_of_stock"} {
		if got := w.orderStatus(id); got != want {
			t.Errorf("order %s: %s, want %s", id, got, want)
		}
	}
	w.checkInvariants()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hops, err := trace.Load(ctx, w.reader, ids[0])
	if err != nil {
		t.Fatalf("trace as the reader: %v", err)
	}
	if len(hops) != 4 {
		t.Errorf("trace as the reader: %d hops, want 4", len(hops))
	}
	// The read model's /stats says how far behind every service's consumer
	// is, under its own identity too (listing consumers is read-only).
	resp, err := http.Get(w.url("readmodel") + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Behind map[string]int64 `json:"behind"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if len(st.Behind) < 10 {
		t.Errorf("/stats knows %d consumers, want every service's: %v", len(st.Behind), st.Behind)
	}
	for name, n := range st.Behind {
		if n < 0 {
			t.Errorf("/stats: consumer %s: not known how far behind (%d) under the readmodel identity", name, n)
		}
	}
}

// Inventory's identity may not publish payment's events (the stream holds
// nothing), take from payment's consumer, or delete a stream; the reader may
// not publish an event; a client with no identity may not connect.
func TestIdentityRefusedOutsideItsRights(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATSWith(t, testenv.NATSOptions{Auth: devIdentity(t, access.AuthFile)})
	operator := testenv.JetStream(t, n.Connect(t, identityOptions(t, access.Operator)...))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := stream.Ensure(ctx, operator, stream.Config{}); err != nil {
		t.Fatalf("provision as the operator: %v", err)
	}
	if _, err := stream.EnsureConsumer(ctx, operator, stream.ConsumerConfig{
		Stream: stream.Inventory, Durable: "payment-inventory", FilterSubjects: []string{"inventory.reserved.>"},
	}); err != nil {
		t.Fatal(err)
	}
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 2*time.Second) }
	octx, ocancel := short()
	if _, err := operator.Publish(octx, "inventory.reserved.o1", []byte(`{}`)); err == nil {
		t.Fatal("the operator published a saga event")
	}
	ocancel()

	inventory := n.Connect(t, identityOptions(t, "inventory")...)
	ijs := testenv.JetStream(t, inventory)

	forged, err := event.New(event.PaymentCompleted, "x", "01900000-0000-7000-8000-0000000000aa", event.PaymentCompletedPayload{OrderID: "x", PaymentID: "p", AmountCents: 1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := short()
	if _, err := ijs.PublishMsg(pctx, forged.Msg()); err == nil {
		t.Error("inventory published payment.completed.x")
	}
	pcancel()
	if got := msgs(t, operator, stream.Payments); got != 0 {
		t.Errorf("PAYMENTS holds %d messages after inventory's forged publish, want 0", got)
	}

	cctx, ccancel := short()
	if _, err := ijs.Consumer(cctx, stream.Inventory, "payment-inventory"); err == nil {
		t.Error("inventory read payment's consumer")
	}
	ccancel()
	if _, err := inventory.Request("$JS.API.CONSUMER.MSG.NEXT.INVENTORY.payment-inventory", []byte(`{"batch":1}`), 2*time.Second); err == nil {
		t.Error("inventory fetched from payment's consumer")
	}
	if _, err := inventory.Request("$JS.API.CONSUMER.CREATE.INVENTORY.payment-inventory", []byte(`{}`), 2*time.Second); err == nil {
		t.Error("inventory created or changed payment's consumer")
	}
	dctx, dcancel := short()
	if err := ijs.DeleteStream(dctx, stream.Orders); err == nil {
		t.Error("inventory deleted ORDERS")
	}
	dcancel()
	if _, err := operator.Stream(ctx, stream.Orders); err != nil {
		t.Errorf("ORDERS after inventory tried to delete it: %v", err)
	}
	// Its own rights do work.
	if _, err := stream.EnsureConsumer(ctx, ijs, stream.ConsumerConfig{
		Stream: stream.Orders, Durable: "inventory-orders", FilterSubjects: []string{"order.created.>", "order.confirmed.>"},
	}); err != nil {
		t.Errorf("inventory creating its own consumer: %v", err)
	}

	reader := testenv.JetStream(t, n.Connect(t, identityOptions(t, access.Reader)...))
	rctx, rcancel := short()
	if _, err := reader.Publish(rctx, "order.created.x", []byte(`{}`)); err == nil {
		t.Error("the reader published order.created.x")
	}
	rcancel()
	rctx, rcancel = short()
	if err := reader.DeleteStream(rctx, stream.DLQ); err == nil {
		t.Error("the reader deleted DLQ")
	}
	rcancel()
	rctx, rcancel = short()
	defer rcancel()
	if s, err := reader.Stream(ctx, stream.DLQ); err != nil {
		t.Errorf("the reader's stream info: %v", err)
	} else if err := s.Purge(rctx); err == nil {
		t.Error("the reader purged DLQ")
	}

	if nc, err := nats.Connect(n.URL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("a client with no identity connected")
	}
}

// A forged event from an identity that may not publish it never reaches a
// handler: inventory (or the reader) forging payment.completed for an order
// cancelled out of stock, and order.created for an order that never was.
func TestForgedEventWithoutRightsNeverReachesAHandler(t *testing.T) {
	t.Parallel()
	w := identityWorld(t)
	rejected := w.place("c1", item{"sku-scarce", 6, 100})
	w.waitTerminal(rejected)
	w.checkInvariants()
	before := w.snapshot()
	lastSeq := map[string]uint64{}
	for _, name := range stream.Names() {
		lastSeq[name] = lastSequence(t, w.js, name)
	}

	ghost := "01900000-0000-7000-8000-000000000001"
	forgeries := []struct {
		as string
		e  event.Event
	}{
		{"inventory", mustEvent(t, event.PaymentCompleted, rejected, event.PaymentCompletedPayload{OrderID: rejected, PaymentID: "p", AmountCents: 600})},
		{access.Reader, mustEvent(t, event.PaymentCompleted, rejected, event.PaymentCompletedPayload{OrderID: rejected, PaymentID: "p", AmountCents: 600})},
		{"payment", mustEvent(t, event.OrderCreated, ghost, event.OrderCreatedPayload{OrderID: ghost, CustomerID: "x", Items: []event.Item{{SKU: "sku-a", Qty: 100, UnitPriceCents: 1}}, TotalCents: 100})},
		{"readmodel", mustEvent(t, event.InventoryReleased, rejected, event.InventoryReleasedPayload{OrderID: rejected, Items: []event.Item{{SKU: "sku-a", Qty: 1}}})},
	}
	for _, f := range forgeries {
		nc := w.nats.Connect(t, identityOptions(t, f.as)...)
		// A plain publish, as `nats pub` does: the server drops it and
		// tells the client so.
		if err := nc.PublishMsg(f.e.Msg()); err != nil {
			t.Fatal(err)
		}
		if err := nc.FlushTimeout(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		js := testenv.JetStream(t, nc)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.PublishMsg(ctx, f.e.Msg())
		cancel()
		if err == nil {
			t.Errorf("%s published %s", f.as, f.e.Subject())
		}
	}
	for _, name := range stream.Names() {
		if got := lastSequence(t, w.js, name); got != lastSeq[name] {
			t.Errorf("%s: last sequence %d after the forgeries, want %d", name, got, lastSeq[name])
		}
	}
	waitQuiet(t, w)
	after := w.snapshot()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed after forged events:\n before %s\n after  %s", k, v, after[k])
		}
	}
	if got := w.scalar(`SELECT count(*)::text FROM inventory.reservations WHERE order_id = $1`, ghost); got != "0" {
		t.Errorf("inventory holds %s reservation(s) for an order that never was", got)
	}
	w.checkInvariants()
}

func mustEvent(t *testing.T, typ event.Type, orderID string, p event.Payload) event.Event {
	t.Helper()
	cause := "01900000-0000-7000-8000-0000000000aa"
	if typ == event.OrderCreated {
		cause = ""
	}
	e, err := event.New(typ, orderID, cause, p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func msgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func lastSequence(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}
