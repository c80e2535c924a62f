package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/dlq"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// forger publishes hand-made events into the world's streams with the
// jetstream API, as anyone who reaches the NATS port could with `nats pub`
// and plausible headers and bodies, and remembers where each was stored:
// check.Options.Injected, so that jetsaga check accounts for them and their
// dead letters.
type forger struct {
	w        *world
	injected map[check.StreamMsg]bool
}

// publish builds the event (a made-up causation id unless cause is given),
// lets edit change it, and publishes it.
func (f *forger) publish(t event.Type, orderID, cause string, p event.Payload, edit func(*event.Event)) event.Event {
	f.w.t.Helper()
	if cause == "" && t != event.OrderCreated {
		cause = uuid.Must(uuid.NewV7()).String()
	}
	e, err := event.New(t, orderID, cause, p, time.Now())
	if err != nil {
		f.w.t.Fatal(err)
	}
	if edit != nil {
		edit(&e)
	}
	ack, err := f.w.js.PublishMsg(context.Background(), e.Msg())
	if err != nil {
		f.w.t.Fatalf("publish forged %s: %v", t, err)
	}
	f.injected[check.StreamMsg{Stream: ack.Stream, Seq: ack.Sequence}] = true
	return e
}

// waitDeadLetter waits until consumer has dead-lettered the event and
// returns the error it gave.
func (f *forger) waitDeadLetter(e event.Event, consumer string) string {
	f.w.t.Helper()
	var why string
	testenv.WaitFor(f.w.t, 60*time.Second, fmt.Sprintf("%s dead-letters forged %s", consumer, e.Type), func() bool {
		entries, err := dlq.List(context.Background(), f.w.js, "")
		if err != nil {
			return false
		}
		for _, d := range entries {
			if d.EventID == e.ID && d.Consumer == consumer {
				why = d.Error
				return true
			}
		}
		return false
	})
	return why
}

// checkInvariants is world.checkInvariants with the forged messages passed
// as injected.
func (f *forger) checkInvariants() {
	w := f.w
	w.t.Helper()
	ctx := context.Background()
	if err := check.Quiesce(ctx, check.OneDB(w.db), w.js, 90*time.Second); err != nil {
		w.t.Fatalf("not quiescent: %v", err)
	}
	rep, err := check.Run(ctx, check.OneDB(w.db), w.js, check.Options{Injected: f.injected})
	if err != nil {
		w.t.Fatal(err)
	}
	if !rep.OK() {
		var b strings.Builder
		rep.Write(&b)
		w.t.Fatalf("invariants violated:\n%s", b.String())
	}
}

// Every forgery issue 10 lists, published into a running world: each is
// refused (a no-op, or retried until it is one) or dead-lettered with the
// reason, the genuine sagas end as they would have, and every invariant
// holds.
func TestForgedEventsAreRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{seedStock: map[string]int{"sku-a": 5, "sku-big": 10, "sku-c": 3, "sku-d": 10}})
	f := &forger{w: w, injected: map[check.StreamMsg]bool{}}
	ctx := context.Background()

	// 1. payment.completed for an order inventory rejected (6 wanted, 5 in
	// stock): no payment, the order stays CANCELLED.
	rejected := w.place("c1", item{"sku-a", 6, 100})
	w.waitTerminal(rejected)
	f.publish(event.PaymentCompleted, rejected, "", event.PaymentCompletedPayload{OrderID: rejected, PaymentID: "pay-forged", AmountCents: 600}, nil)

	// 2. inventory.reserved at 0 cents for a 100,000-cent order: payment
	// and the order service dead-letter it; the genuine charge is 100,000.
	big := w.place("c2", item{"sku-big", 1, 100_000})
	zero := f.publish(event.InventoryReserved, big, "", event.InventoryReservedPayload{
		OrderID: big, Items: []event.Item{{SKU: "sku-big", Qty: 1}}, TotalCents: 0}, nil)
	if why := f.waitDeadLetter(zero, "payment-inventory"); !strings.Contains(why, "disagrees") {
		t.Errorf("payment dead-lettered the 0-cent reservation with %q, want the disagreement", why)
	}
	f.waitDeadLetter(zero, "order-inventory")
	w.waitTerminal(big)

	// 3 and 4. payment.failed, and inventory.released, for orders still
	// waiting for their charge (payment stopped): inventory dead-letters
	// the payment.failed (it follows no inventory.reserved of its own), the
	// order service waits for a payment.failed before it takes the release;
	// once payment is back, both orders are CONFIRMED, their stock sold.
	w.stop("payment")
	failing := w.place("c3", item{"sku-d", 2, 50})
	releasing := w.place("c4", item{"sku-d", 3, 50})
	testenv.WaitFor(t, 60*time.Second, "both orders RESERVED", func() bool {
		return w.orderStatus(failing) == "RESERVED/" && w.orderStatus(releasing) == "RESERVED/"
	})
	failed := f.publish(event.PaymentFailed, failing, "", event.PaymentFailedPayload{OrderID: failing, Reason: "declined_random", AmountCents: 100}, nil)
	if why := f.waitDeadLetter(failed, "inventory-payments"); !strings.Contains(why, "not by the inventory.reserved") {
		t.Errorf("inventory dead-lettered the payment.failed with %q, want its cause named", why)
	}
	f.publish(event.InventoryReleased, releasing, "", event.InventoryReleasedPayload{OrderID: releasing, Items: []event.Item{{SKU: "sku-d", Qty: 3}}}, nil)
	w.start("payment")
	w.waitTerminal(failing, releasing)

	// 5. order.created of an order the order service never had, holding
	// all of sku-c: the order service cancels it (unknown_order), inventory
	// releases the stock, and a real customer's order then gets it.
	ghost := uuid.Must(uuid.NewV7()).String()
	f.publish(event.OrderCreated, ghost, "", event.OrderCreatedPayload{
		OrderID: ghost, CustomerID: "mallory", Items: []event.Item{{SKU: "sku-c", Qty: 3, UnitPriceCents: 1}}, TotalCents: 3}, nil)
	testenv.WaitFor(t, 60*time.Second, "the ghost order's stock released", func() bool {
		var n int
		err := w.db.QueryRow(ctx, `SELECT count(*) FROM inventory.reservations WHERE order_id = $1 AND status = 'RELEASED'`, ghost).Scan(&n)
		return err == nil && n == 1
	})
	w.waitTerminal(ghost)
	if got := w.orderStatus(ghost); got != "CANCELLED/unknown_order" {
		t.Errorf("ghost order is %s in the order service, want CANCELLED/unknown_order", got)
	}
	real := w.place("c5", item{"sku-c", 3, 100})
	w.waitTerminal(real)

	// 6. An old-dated order.created (another customer, 1 cent) and an
	// order.cancelled for a CONFIRMED order: the order service and payment
	// dead-letter them, and the read model keeps its view.
	confirmed := w.place("c6", item{"sku-d", 1, 700})
	w.waitTerminal(confirmed)
	oldCreated := f.publish(event.OrderCreated, confirmed, "", event.OrderCreatedPayload{
		OrderID: confirmed, CustomerID: "mallory", Items: []event.Item{{SKU: "sku-d", Qty: 1, UnitPriceCents: 1}}, TotalCents: 1},
		func(e *event.Event) { e.OccurredAt = e.OccurredAt.Add(-24 * time.Hour) })
	cancel := f.publish(event.OrderCancelled, confirmed, "", event.OrderCancelledPayload{OrderID: confirmed, Reason: event.ReasonTimeout}, nil)
	f.waitDeadLetter(oldCreated, "order-orders")
	if why := f.waitDeadLetter(cancel, "payment-orders"); !strings.Contains(why, "confirmed") {
		t.Errorf("payment dead-lettered the order.cancelled with %q, want the confirmation named", why)
	}

	f.checkInvariants()
	want := map[string]string{
		rejected: "CANCELLED/out_of_stock", big: "CONFIRMED/", failing: "CONFIRMED/", releasing: "CONFIRMED/",
		ghost: "CANCELLED/unknown_order", real: "CONFIRMED/", confirmed: "CONFIRMED/",
	}
	for id, status := range want {
		if got := w.orderStatus(id); got != status {
			t.Errorf("order %s is %s, want %s", id, got, status)
		}
		if got := w.viewStatus(id); got != status {
			t.Errorf("the read model shows order %s %s, want %s", id, got, status)
		}
	}
	if got := w.scalar(`SELECT amount_cents || ' ' || status FROM payment.payments WHERE order_id = $1`, big); got != "100000 COMPLETED" {
		t.Errorf("payment of the 100,000-cent order: %s, want 100000 COMPLETED", got)
	}
	if got := w.scalar(`SELECT count(*)::text FROM payment.payments WHERE order_id = $1`, rejected); got != "0" {
		t.Errorf("%s payments of the rejected order, want 0", got)
	}
	if got := w.scalar(`SELECT customer_id || ' ' || total_cents FROM readmodel.order_views WHERE order_id = $1`, confirmed); got != "c6 700" {
		t.Errorf("read model view of the confirmed order: %s, want c6 700", got)
	}
}
