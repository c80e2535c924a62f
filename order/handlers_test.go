package order

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
)

var (
	reserved   = step{typ: event.InventoryReserved}
	outOfStock = step{typ: event.InventoryRejected, reason: event.ReasonOutOfStock}
	unknownSKU = step{typ: event.InventoryRejected, reason: event.ReasonUnknownSKU}
	completed  = step{typ: event.PaymentCompleted}
	failed     = step{typ: event.PaymentFailed}
	released   = step{typ: event.InventoryReleased}
)

// TestHandleTransitions delivers sequences of events, in causal order and
// out of it, and checks the row and the outbox after each sequence.
func TestHandleTransitions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		steps       []step
		status      Status
		reason      string
		failed      bool
		version     int
		emitted     []event.Type // after order.created
		emitPayload event.Payload
	}{
		{name: "reserved", steps: []step{reserved}, status: Reserved, version: 2},
		{name: "confirmed", steps: []step{reserved, completed}, status: Confirmed, version: 3,
			emitted: []event.Type{event.OrderConfirmed}, emitPayload: event.OrderConfirmedPayload{TotalCents: testTotal}},
		{name: "out of stock", steps: []step{outOfStock}, status: Cancelled, reason: event.ReasonOutOfStock, version: 2,
			emitted: []event.Type{event.OrderCancelled}, emitPayload: event.OrderCancelledPayload{Reason: event.ReasonOutOfStock}},
		{name: "unknown sku", steps: []step{unknownSKU}, status: Cancelled, reason: event.ReasonUnknownSKU, version: 2,
			emitted: []event.Type{event.OrderCancelled}, emitPayload: event.OrderCancelledPayload{Reason: event.ReasonUnknownSKU}},
		{name: "payment failed, awaiting release", steps: []step{reserved, failed}, status: Reserved, failed: true, version: 3},
		{name: "payment failed then released", steps: []step{reserved, failed, released}, status: Cancelled,
			reason: event.ReasonPaymentFailed, failed: true, version: 4,
			emitted: []event.Type{event.OrderCancelled}, emitPayload: event.OrderCancelledPayload{Reason: event.ReasonPaymentFailed}},

		// Out of causal order: redeliveries reorder messages, and the
		// events come on two consumers. An event that needs a step the
		// order has not seen (payment before reservation, release before
		// payment.failed) is retried until it has.
		{name: "completed before reserved", steps: []step{completed, reserved}, status: Confirmed, version: 3,
			emitted: []event.Type{event.OrderConfirmed}, emitPayload: event.OrderConfirmedPayload{TotalCents: testTotal}},
		{name: "failed before reserved", steps: []step{failed, reserved}, status: Reserved, failed: true, version: 3},
		{name: "released before failed", steps: []step{reserved, released, failed}, status: Cancelled,
			reason: event.ReasonPaymentFailed, failed: true, version: 4,
			emitted: []event.Type{event.OrderCancelled}, emitPayload: event.OrderCancelledPayload{Reason: event.ReasonPaymentFailed}},
		{name: "released first", steps: []step{released, failed, reserved}, status: Cancelled,
			reason: event.ReasonPaymentFailed, failed: true, version: 4,
			emitted: []event.Type{event.OrderCancelled}, emitPayload: event.OrderCancelledPayload{Reason: event.ReasonPaymentFailed}},

		// Late events after a terminal state change nothing.
		{name: "late after confirmed", steps: []step{reserved, completed, outOfStock, failed, released, reserved, completed},
			status: Confirmed, version: 3,
			emitted: []event.Type{event.OrderConfirmed}, emitPayload: event.OrderConfirmedPayload{TotalCents: testTotal}},
		{name: "late after out of stock", steps: []step{outOfStock, reserved, completed, failed, released, unknownSKU},
			status: Cancelled, reason: event.ReasonOutOfStock, version: 2,
			emitted: []event.Type{event.OrderCancelled}, emitPayload: event.OrderCancelledPayload{Reason: event.ReasonOutOfStock}},
	}
	b := setup(t)
	for _, tt := range tests {
		for _, batch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/batch=%t", tt.name, batch), func(t *testing.T) {
				t.Parallel()
				o := placeOrder(t, b)
				var causes []string // the ids of the events delivered
				var events []event.Event
				for _, s := range tt.steps {
					e := newEvent(t, s.typ, o.ID, s.reason)
					causes = append(causes, e.ID)
					events = append(events, e)
				}
				if !batch {
					deliverRetrying(t, b, events)
				} else if err := deliverBatch(t.Context(), b, b.svc.HandleBatch, events); err != nil {
					// All of them in one batch, set-based; one too early
					// refuses the batch, which the loop then hands over
					// one by one.
					if !errors.Is(err, ErrTooEarly) {
						t.Fatalf("deliver a batch of %d: %v", len(events), err)
					}
					deliverRetrying(t, b, events)
				}

				got := loadOrder(t, b, o.ID)
				if got.Status != tt.status || got.Reason != tt.reason || got.PaymentFailed != tt.failed || got.Version != tt.version {
					t.Errorf("order: %s reason %q payment_failed %t version %d; want %s %q %t %d",
						got.Status, got.Reason, got.PaymentFailed, got.Version, tt.status, tt.reason, tt.failed, tt.version)
				}
				if got.CustomerID != o.CustomerID || got.TotalCents != testTotal || !reflect.DeepEqual(got.Items, testItems) ||
					!got.CreatedAt.Equal(o.CreatedAt) {
					t.Errorf("order's own fields changed: %+v, placed as %+v", got, o)
				}
				if tt.version > 1 && !got.UpdatedAt.After(got.CreatedAt) {
					t.Errorf("updated_at %v not after created_at %v", got.UpdatedAt, got.CreatedAt)
				}

				rows := outboxOf(t, b, o.ID)
				want := append([]event.Type{event.OrderCreated}, tt.emitted...)
				if types := outboxTypes(rows); !reflect.DeepEqual(types, want) {
					t.Fatalf("outbox = %v, want %v", types, want)
				}
				if len(rows) < 2 {
					return
				}
				// The emitted event: caused by one of the delivered events, and
				// carrying the order's total or reason.
				out := rows[1]
				if !contains(causes, out.CausationID) {
					t.Errorf("causation id %q is none of the delivered events %v", out.CausationID, causes)
				}
				checkPayload(t, out, o.ID, tt.emitPayload)
			})
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// checkPayload decodes an outbox row's body and compares it with want,
// whose order id is filled in.
func checkPayload(t *testing.T, row outboxRow, orderID string, want event.Payload) {
	t.Helper()
	got, err := event.DecodePayload(row.Type, row.Body)
	if err != nil {
		t.Fatalf("outbox %s body: %v", row.Type, err)
	}
	switch w := want.(type) {
	case event.OrderConfirmedPayload:
		w.OrderID = orderID
		want = w
	case event.OrderCancelledPayload:
		w.OrderID = orderID
		want = w
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outbox %s payload = %+v, want %+v", row.Type, got, want)
	}
}

// TestHandleDuplicates delivers every consumed event type twice with the
// same event id (as a redelivery past the inbox would) and twice with new
// ids (as a re-emitting producer would): the second delivery changes
// nothing and adds no outbox row.
func TestHandleDuplicates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		before []step // brings the order to where the event applies
		event  step
	}{
		{name: "reserved", event: reserved},
		{name: "rejected out of stock", event: outOfStock},
		{name: "rejected unknown sku", event: unknownSKU},
		{name: "completed", before: []step{reserved}, event: completed},
		{name: "failed", before: []step{reserved}, event: failed},
		{name: "released", before: []step{reserved, failed}, event: released},
	}
	b := setup(t)
	for _, tt := range tests {
		for _, sameID := range []bool{true, false} {
			name := tt.name + "/same event id"
			if !sameID {
				name = tt.name + "/new event id"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				o := placeOrder(t, b)
				for _, s := range tt.before {
					mustDeliver(t, b, newEvent(t, s.typ, o.ID, s.reason))
				}
				first := newEvent(t, tt.event.typ, o.ID, tt.event.reason)
				mustDeliver(t, b, first)
				once := loadOrder(t, b, o.ID)
				onceOutbox := outboxOf(t, b, o.ID)

				second := first
				if !sameID {
					second = newEvent(t, tt.event.typ, o.ID, tt.event.reason)
				}
				mustDeliver(t, b, second)
				if twice := loadOrder(t, b, o.ID); !reflect.DeepEqual(twice, once) {
					t.Errorf("second delivery changed the order:\n  %+v\nwas\n  %+v", twice, once)
				}
				if twice := outboxOf(t, b, o.ID); !reflect.DeepEqual(twice, onceOutbox) {
					t.Errorf("second delivery changed the outbox: %v, was %v", outboxTypes(twice), outboxTypes(onceOutbox))
				}
			})
		}
	}
}

// TestHandleConcurrentOutcomes delivers conflicting outcomes for one order
// at the same time, each in its own transaction: the row lock lets exactly
// one of them decide, and exactly one terminal event is emitted.
func TestHandleConcurrentOutcomes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := placeOrder(t, b)
	mustDeliver(t, b, newEvent(t, event.InventoryReserved, o.ID, ""))
	var events []event.Event
	for range 4 {
		events = append(events,
			newEvent(t, event.PaymentCompleted, o.ID, ""),
			newEvent(t, event.InventoryReleased, o.ID, ""),
			newEvent(t, event.InventoryRejected, o.ID, event.ReasonOutOfStock))
	}
	var wg sync.WaitGroup
	type result struct {
		e   event.Event
		err error
	}
	results := make(chan result, len(events))
	for _, e := range events {
		wg.Go(func() { results <- result{e, deliver(t.Context(), b, e)} })
	}
	wg.Wait()
	close(results)
	for r := range results {
		switch {
		case r.err == nil:
		case consume.IsNotYet(r.err):
			// An inventory.released handled before the order ended: it
			// waits for its payment.failed; retried now that the order has
			// ended, it changes nothing.
			if err := deliver(t.Context(), b, r.e); err != nil {
				t.Errorf("deliver %s again: %v", r.e.Type, err)
			}
		default:
			t.Errorf("deliver %s: %v", r.e.Type, r.err)
		}
	}
	got := loadOrder(t, b, o.ID)
	if !got.Status.Terminal() || got.Version != 3 {
		t.Errorf("order %s at version %d, want terminal at version 3", got.Status, got.Version)
	}
	rows := outboxOf(t, b, o.ID)
	if len(rows) != 2 {
		t.Fatalf("outbox = %v, want order.created and one outcome", outboxTypes(rows))
	}
	wantType := event.OrderConfirmed
	if got.Status == Cancelled {
		wantType = event.OrderCancelled
	}
	if rows[1].Type != wantType {
		t.Errorf("order %s emitted %s", got.Status, rows[1].Type)
	}
}

// TestHandlePermanentErrors: events that can never apply are marked
// permanent (dead-lettered, not retried) and leave nothing behind.
func TestHandlePermanentErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := placeOrder(t, b)
	badBody := newEvent(t, event.InventoryRejected, o.ID, event.ReasonOutOfStock)
	badBody.Body = []byte(`{"order_id":"` + o.ID + `","reason":"bored"}`)
	tests := []struct {
		name    string
		event   event.Event
		wantErr error
	}{
		{name: "unknown order reserved", event: aged(newEvent(t, event.InventoryReserved, "no-such-order", "")), wantErr: ErrNotFound},
		{name: "unknown order rejected", event: aged(newEvent(t, event.InventoryRejected, "no-such-order", event.ReasonOutOfStock)), wantErr: ErrNotFound},
		{name: "unknown order completed", event: aged(newEvent(t, event.PaymentCompleted, "no-such-order", "")), wantErr: ErrNotFound},
		{name: "unknown order failed", event: aged(newEvent(t, event.PaymentFailed, "no-such-order", "")), wantErr: ErrNotFound},
		{name: "unknown order released", event: aged(newEvent(t, event.InventoryReleased, "no-such-order", "")), wantErr: ErrNotFound},
		{name: "type not consumed", event: newEvent(t, event.OrderCreated, o.ID, ""), wantErr: ErrUnhandledEvent},
		{name: "undecodable rejection", event: badBody, wantErr: event.ErrContract},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := deliver(t.Context(), b, tt.event)
			if !consume.IsPermanent(err) || !errors.Is(err, tt.wantErr) {
				t.Fatalf("deliver: err = %v, want a permanent error matching %v", err, tt.wantErr)
			}
		})
	}
	if got := loadOrder(t, b, o.ID); got.Status != Pending || got.Version != 1 {
		t.Errorf("order %s at version %d after failed deliveries, want PENDING at 1", got.Status, got.Version)
	}
	if n := countRows(t, b, `SELECT count(*) FROM outbox`); n != 1 {
		t.Errorf("outbox holds %d rows, want only order.created", n)
	}
	if n := countRows(t, b, `SELECT count(*) FROM orders`); n != 1 {
		t.Errorf("orders holds %d rows, want 1", n)
	}
}

// TestHandleEmittedEventIsValid: what the handler adds to the outbox is a
// complete event that the consumers downstream accept.
func TestHandleEmittedEventIsValid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := placeOrder(t, b)
	mustDeliver(t, b, newEvent(t, event.InventoryReserved, o.ID, ""))
	cause := newEvent(t, event.PaymentCompleted, o.ID, "")
	mustDeliver(t, b, cause)

	var e event.Event
	var typ string
	err := b.pool.QueryRow(t.Context(), `
		SELECT event_id::text, event_type, order_id, causation_id, occurred_at, body
		FROM outbox WHERE order_id = $1 AND event_type = $2`, o.ID, string(event.OrderConfirmed)).
		Scan(&e.ID, &typ, &e.OrderID, &e.CausationID, &e.OccurredAt, &e.Body)
	if err != nil {
		t.Fatal(err)
	}
	e.Type = event.Type(typ)
	if err := e.Validate(); err != nil {
		t.Fatalf("emitted event: %v", err)
	}
	if e.CausationID != cause.ID {
		t.Errorf("causation id = %s, want %s", e.CausationID, cause.ID)
	}
	got := loadOrder(t, b, o.ID)
	if !e.OccurredAt.Equal(got.UpdatedAt) {
		t.Errorf("occurred_at %v, order updated_at %v: want the same instant", e.OccurredAt, got.UpdatedAt)
	}
	var p event.OrderConfirmedPayload
	if err := json.Unmarshal(e.Body, &p); err != nil || p.TotalCents != testTotal {
		t.Errorf("body %s: total %d, err %v", e.Body, p.TotalCents, err)
	}
}

// A batch with an event Handle would refuse fails whole, with the same
// permanent error, and writes nothing: the loop then goes one by one.
func TestHandleBatchRefusesWhatHandleRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	good := placeOrder(t, b)
	events := []event.Event{
		newEvent(t, event.InventoryReserved, good.ID, ""),
		aged(newEvent(t, event.InventoryReserved, "no-such-order", "")),
	}
	tx, err := b.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(t.Context()) }()
	err = b.svc.HandleBatch(t.Context(), tx, events)
	if !consume.IsPermanent(err) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("HandleBatch = %v, want a permanent ErrNotFound", err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := loadOrder(t, b, good.ID); got.Status != Pending || got.Version != 1 {
		t.Fatalf("order after the refused batch: %s v%d, want PENDING v1", got.Status, got.Version)
	}
}

// PrepareBatch locks every order of a batch: another transaction cannot
// lock any of them until the batch's transaction ends.
func TestPrepareBatchLocksEveryOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	o1, o2 := placeOrder(t, b), placeOrder(t, b)
	events := []event.Event{
		newEvent(t, event.InventoryReserved, o1.ID, ""),
		newEvent(t, event.PaymentCompleted, o2.ID, ""),
	}
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := b.svc.PrepareBatch(ctx, tx, events); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{o1.ID, o2.ID} {
		other, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = other.Exec(ctx, `SELECT 1 FROM orders WHERE order_id = $1 FOR UPDATE NOWAIT`, id)
		_ = other.Rollback(ctx)
		if err == nil {
			t.Errorf("order %s could be locked while the batch's transaction holds it", id)
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `SELECT 1 FROM orders WHERE order_id = $1 FOR UPDATE NOWAIT`, o1.ID); err != nil {
		t.Errorf("order %s still locked after the batch's transaction ended: %v", o1.ID, err)
	}
}
