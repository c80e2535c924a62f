package order

import (
	"errors"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
)

// TestVerify: what each event says is checked against the order before it
// applies; a contradiction is ErrDisagrees, an event ahead of the step it
// follows ErrTooEarly.
func TestVerify(t *testing.T) {
	t.Parallel()
	items := []event.Item{{SKU: "a", Qty: 2, UnitPriceCents: 500}, {SKU: "b", Qty: 1, UnitPriceCents: 99_000}}
	pending := Order{ID: "o1", Items: items, TotalCents: 100_000, Status: Pending}
	reserved, cancelled := pending, pending
	reserved.Status = Reserved
	cancelled.Status, cancelled.Reason = Cancelled, event.ReasonOutOfStock
	failedSeen := reserved
	failedSeen.PaymentFailed = true
	lines := []event.Item{{SKU: "b", Qty: 1}, {SKU: "a", Qty: 1}, {SKU: "a", Qty: 1}}
	tests := []struct {
		name    string
		o       Order
		t       event.Type
		f       Facts
		wantErr error
	}{
		{"reserved as ordered", pending, event.InventoryReserved, Facts{AmountCents: 100_000, Items: items}, nil},
		{"reserved at 0 cents", pending, event.InventoryReserved, Facts{AmountCents: 0, Items: []event.Item{{SKU: "a", Qty: 1}}}, ErrDisagrees},
		{"reserved other prices", pending, event.InventoryReserved, Facts{AmountCents: 100_000, Items: []event.Item{{SKU: "a", Qty: 2, UnitPriceCents: 49_500}, {SKU: "b", Qty: 1, UnitPriceCents: 1000}}}, ErrDisagrees},
		{"completed after reservation", reserved, event.PaymentCompleted, Facts{AmountCents: 100_000}, nil},
		{"completed of another amount", reserved, event.PaymentCompleted, Facts{AmountCents: 0}, ErrDisagrees},
		{"completed before reservation", pending, event.PaymentCompleted, Facts{AmountCents: 100_000}, ErrTooEarly},
		{"completed after rejection: a no-op follows", cancelled, event.PaymentCompleted, Facts{AmountCents: 100_000}, nil},
		{"completed of another amount after rejection", cancelled, event.PaymentCompleted, Facts{AmountCents: 1}, ErrDisagrees},
		{"failed after reservation", reserved, event.PaymentFailed, Facts{AmountCents: 100_000}, nil},
		{"failed before reservation", pending, event.PaymentFailed, Facts{AmountCents: 100_000}, ErrTooEarly},
		{"failed of another amount", reserved, event.PaymentFailed, Facts{AmountCents: 5}, ErrDisagrees},
		{"released after payment.failed", failedSeen, event.InventoryReleased, Facts{Items: lines}, nil},
		{"released before payment.failed", reserved, event.InventoryReleased, Facts{Items: lines}, ErrTooEarly},
		{"released other lines", failedSeen, event.InventoryReleased, Facts{Items: []event.Item{{SKU: "a", Qty: 2}}}, ErrDisagrees},
		{"rejected", pending, event.InventoryRejected, Facts{}, nil},
	}
	for _, tt := range tests {
		err := tt.o.Verify(tt.t, tt.f)
		if (tt.wantErr == nil) != (err == nil) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
}

// TestHandleCreated: the order service reads back its order.created events.
// Its own is a no-op; one of an order it never placed is recorded CANCELLED
// (unknown_order) and order.cancelled is published, once; one that says
// something else of an order it has is dead-lettered.
func TestHandleCreated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := placeOrder(t, b)
	own, err := event.New(event.OrderCreated, o.ID, "", o.Created(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := deliverBatch(t.Context(), b, b.svc.HandleCreated, []event.Event{own}); err != nil {
		t.Fatalf("own order.created: %v", err)
	}
	if got := loadOrder(t, b, o.ID); got.Status != Pending || got.Version != 1 {
		t.Fatalf("order after its own order.created: %s v%d, want PENDING v1", got.Status, got.Version)
	}

	other := o.Created()
	other.CustomerID = "someone-else"
	forgedCopy, err := event.New(event.OrderCreated, o.ID, "", other, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := deliverBatch(t.Context(), b, b.svc.HandleCreated, []event.Event{own, forgedCopy}); !consume.IsPermanent(err) || !errors.Is(err, ErrDisagrees) {
		t.Fatalf("old-dated order.created of another customer: %v, want a permanent ErrDisagrees", err)
	}

	forged := newEvent(t, event.OrderCreated, "never-placed", "")
	for range 2 {
		if err := deliverBatch(t.Context(), b, b.svc.HandleCreated, []event.Event{forged}); err != nil {
			t.Fatalf("order.created of an order never placed: %v", err)
		}
	}
	got := loadOrder(t, b, "never-placed")
	if got.Status != Cancelled || got.Reason != event.ReasonUnknownOrder || got.TotalCents != testTotal || got.CustomerID != "c" {
		t.Fatalf("order never placed: %+v, want CANCELLED unknown_order with the event's customer and total", got)
	}
	rows := outboxOf(t, b, "never-placed")
	if len(rows) != 1 || rows[0].Type != event.OrderCancelled || rows[0].CausationID != forged.ID {
		t.Fatalf("outbox of the order never placed: %+v, want one order.cancelled caused by the order.created", rows)
	}
	checkPayload(t, rows[0], "never-placed", event.OrderCancelledPayload{Reason: event.ReasonUnknownOrder})

	// Now known, its late events are no-ops rather than retried.
	if err := deliver(t.Context(), b, newEvent(t, event.InventoryReserved, "never-placed", "")); err != nil {
		t.Fatalf("inventory.reserved of the cancelled unknown order: %v", err)
	}
	// An event of an order the service does not have is retried while
	// young (its order.created may be on its way), then dead-lettered.
	young := newEvent(t, event.PaymentCompleted, "still-unknown", "")
	young.OccurredAt = clockBase
	if err := deliver(t.Context(), b, young); !errors.Is(err, ErrNotFound) || consume.IsPermanent(err) {
		t.Fatalf("young event of an unknown order: %v, want ErrNotFound, retried", err)
	}
}
