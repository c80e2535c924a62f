package order

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/event"
)

var (
	t0 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	t1 = t0.Add(time.Second)
)

func items(n int) []event.Item {
	out := make([]event.Item, n)
	for i := range out {
		out[i] = event.Item{SKU: fmt.Sprintf("sku-%d", i), Qty: 1, UnitPriceCents: 100}
	}
	return out
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		customer  string
		items     []event.Item
		wantTotal int64
		wantErr   map[string]string // nil: valid
	}{
		{name: "one item", customer: "c1", items: []event.Item{{SKU: "sku-1", Qty: 2, UnitPriceCents: 1999}}, wantTotal: 3998},
		{name: "several items", customer: "Cust_9-x", items: []event.Item{
			{SKU: "a", Qty: 1, UnitPriceCents: 100}, {SKU: "b", Qty: 1000, UnitPriceCents: 0}, {SKU: "c", Qty: 3, UnitPriceCents: 7}}, wantTotal: 121},
		{name: "fifty items", customer: "c", items: items(50), wantTotal: 5000},
		{name: "64-char ids", customer: strings.Repeat("c", 64), items: []event.Item{{SKU: strings.Repeat("s", 64), Qty: 1, UnitPriceCents: 1}}, wantTotal: 1},
		{name: "largest total", customer: "c", items: []event.Item{{SKU: "s", Qty: 1, UnitPriceCents: math.MaxInt64}}, wantTotal: math.MaxInt64},

		{name: "no customer", items: items(1), wantErr: map[string]string{"customer_id": "must be 1-64 chars of [A-Za-z0-9_-]"}},
		{name: "customer too long", customer: strings.Repeat("c", 65), items: items(1), wantErr: map[string]string{"customer_id": "must be 1-64 chars of [A-Za-z0-9_-]"}},
		{name: "customer with dot", customer: "c.1", items: items(1), wantErr: map[string]string{"customer_id": "must be 1-64 chars of [A-Za-z0-9_-]"}},
		{name: "customer with unicode", customer: "cé", items: items(1), wantErr: map[string]string{"customer_id": "must be 1-64 chars of [A-Za-z0-9_-]"}},
		{name: "no items", customer: "c", items: nil, wantErr: map[string]string{"items": "must hold 1-50 items"}},
		{name: "51 items", customer: "c", items: items(51), wantErr: map[string]string{"items": "must hold 1-50 items"}},
		{name: "empty sku", customer: "c", items: []event.Item{{SKU: "", Qty: 1}}, wantErr: map[string]string{"items[0].sku": "must be 1-64 chars of [A-Za-z0-9_-]"}},
		{name: "sku with space", customer: "c", items: []event.Item{{SKU: "a", Qty: 1}, {SKU: "a b", Qty: 1}}, wantErr: map[string]string{"items[1].sku": "must be 1-64 chars of [A-Za-z0-9_-]"}},
		{name: "sku too long", customer: "c", items: []event.Item{{SKU: strings.Repeat("s", 65), Qty: 1}}, wantErr: map[string]string{"items[0].sku": "must be 1-64 chars of [A-Za-z0-9_-]"}},
		{name: "qty zero", customer: "c", items: []event.Item{{SKU: "a", Qty: 0}}, wantErr: map[string]string{"items[0].qty": "must be 1-1000"}},
		{name: "qty negative", customer: "c", items: []event.Item{{SKU: "a", Qty: -1}}, wantErr: map[string]string{"items[0].qty": "must be 1-1000"}},
		{name: "qty 1001", customer: "c", items: []event.Item{{SKU: "a", Qty: 1001}}, wantErr: map[string]string{"items[0].qty": "must be 1-1000"}},
		{name: "negative price", customer: "c", items: []event.Item{{SKU: "a", Qty: 1, UnitPriceCents: -1}}, wantErr: map[string]string{"items[0].unit_price_cents": "must be >= 0"}},
		{name: "total overflows", customer: "c", items: []event.Item{{SKU: "a", Qty: 2, UnitPriceCents: math.MaxInt64 / 2}, {SKU: "b", Qty: 1, UnitPriceCents: 2}},
			wantErr: map[string]string{"items": "total price overflows"}},
		{name: "every field at once", customer: "", items: []event.Item{{SKU: "", Qty: 0, UnitPriceCents: -5}, {SKU: "ok", Qty: 1}},
			wantErr: map[string]string{
				"customer_id":               "must be 1-64 chars of [A-Za-z0-9_-]",
				"items[0].sku":              "must be 1-64 chars of [A-Za-z0-9_-]",
				"items[0].qty":              "must be 1-1000",
				"items[0].unit_price_cents": "must be >= 0",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, err := New("o1", tt.customer, tt.items, t0)
			if tt.wantErr != nil {
				var ve *ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("New: err = %v, want a *ValidationError", err)
				}
				if !reflect.DeepEqual(ve.Fields, tt.wantErr) {
					t.Fatalf("fields = %v, want %v", ve.Fields, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			want := Order{ID: "o1", CustomerID: tt.customer, Items: tt.items, TotalCents: tt.wantTotal,
				Status: Pending, Version: 1, CreatedAt: t0, UpdatedAt: t0}
			if !reflect.DeepEqual(o, want) {
				t.Fatalf("order = %+v, want %+v", o, want)
			}
			// The payload of order.created passes the event contract.
			if _, err := event.New(event.OrderCreated, "o1", "", o.Created(), t0); err != nil {
				t.Fatalf("order.created of a valid order: %v", err)
			}
		})
	}
}

func TestNewCopiesItems(t *testing.T) {
	t.Parallel()
	in := []event.Item{{SKU: "a", Qty: 1, UnitPriceCents: 1}}
	o, err := New("o1", "c", in, t0)
	if err != nil {
		t.Fatal(err)
	}
	in[0].Qty = 99
	if o.Items[0].Qty != 1 {
		t.Fatal("the order shares its items with the caller")
	}
}

func order(status Status, paymentFailed bool) Order {
	o := Order{ID: "o1", CustomerID: "c", Items: []event.Item{{SKU: "a", Qty: 2, UnitPriceCents: 250}},
		TotalCents: 500, Status: status, PaymentFailed: paymentFailed, Version: 3, CreatedAt: t0, UpdatedAt: t0}
	if status == Cancelled {
		o.Reason = event.ReasonOutOfStock
	}
	return o
}

// TestApply covers every state × consumed event.
func TestApply(t *testing.T) {
	t.Parallel()
	cancelled := func(reason string) event.Payload { return event.OrderCancelledPayload{OrderID: "o1", Reason: reason} }
	confirmed := event.OrderConfirmedPayload{OrderID: "o1", TotalCents: 500}
	tests := []struct {
		from          Status
		paymentFailed bool
		typ           event.Type
		reason        string
		// want; changed false means the order comes back as it was
		changed    bool
		status     Status
		wantReason string
		wantFailed bool
		emit       event.Payload
	}{
		{from: Pending, typ: event.InventoryReserved, changed: true, status: Reserved},
		{from: Pending, typ: event.InventoryRejected, reason: event.ReasonOutOfStock, changed: true, status: Cancelled, wantReason: event.ReasonOutOfStock, emit: cancelled(event.ReasonOutOfStock)},
		{from: Pending, typ: event.InventoryRejected, reason: event.ReasonUnknownSKU, changed: true, status: Cancelled, wantReason: event.ReasonUnknownSKU, emit: cancelled(event.ReasonUnknownSKU)},
		{from: Pending, typ: event.PaymentCompleted, changed: true, status: Confirmed, emit: confirmed},
		{from: Pending, typ: event.PaymentFailed, changed: true, status: Pending, wantFailed: true},
		{from: Pending, typ: event.InventoryReleased, changed: true, status: Cancelled, wantReason: event.ReasonPaymentFailed, wantFailed: true, emit: cancelled(event.ReasonPaymentFailed)},

		{from: Pending, paymentFailed: true, typ: event.InventoryReserved, changed: true, status: Reserved, wantFailed: true},
		{from: Pending, paymentFailed: true, typ: event.PaymentFailed},
		{from: Pending, paymentFailed: true, typ: event.InventoryReleased, changed: true, status: Cancelled, wantReason: event.ReasonPaymentFailed, wantFailed: true, emit: cancelled(event.ReasonPaymentFailed)},

		{from: Reserved, typ: event.InventoryReserved},
		{from: Reserved, typ: event.InventoryRejected, reason: event.ReasonOutOfStock, changed: true, status: Cancelled, wantReason: event.ReasonOutOfStock, emit: cancelled(event.ReasonOutOfStock)},
		{from: Reserved, typ: event.PaymentCompleted, changed: true, status: Confirmed, emit: confirmed},
		{from: Reserved, typ: event.PaymentFailed, changed: true, status: Reserved, wantFailed: true},
		{from: Reserved, typ: event.InventoryReleased, changed: true, status: Cancelled, wantReason: event.ReasonPaymentFailed, wantFailed: true, emit: cancelled(event.ReasonPaymentFailed)},

		{from: Reserved, paymentFailed: true, typ: event.PaymentFailed},
		{from: Reserved, paymentFailed: true, typ: event.InventoryReleased, changed: true, status: Cancelled, wantReason: event.ReasonPaymentFailed, wantFailed: true, emit: cancelled(event.ReasonPaymentFailed)},
		{from: Reserved, paymentFailed: true, typ: event.PaymentCompleted, changed: true, status: Confirmed, wantFailed: true, emit: confirmed},

		{from: Confirmed, typ: event.InventoryReserved},
		{from: Confirmed, typ: event.InventoryRejected, reason: event.ReasonOutOfStock},
		{from: Confirmed, typ: event.PaymentCompleted},
		{from: Confirmed, typ: event.PaymentFailed},
		{from: Confirmed, typ: event.InventoryReleased},

		{from: Cancelled, typ: event.InventoryReserved},
		{from: Cancelled, typ: event.InventoryRejected, reason: event.ReasonUnknownSKU},
		{from: Cancelled, typ: event.PaymentCompleted},
		{from: Cancelled, typ: event.PaymentFailed},
		{from: Cancelled, typ: event.InventoryReleased},
		{from: Cancelled, paymentFailed: true, typ: event.InventoryReleased},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/payment_failed=%t/%s", tt.from, tt.paymentFailed, tt.typ)
		if tt.reason != "" {
			name += "/" + tt.reason
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in := order(tt.from, tt.paymentFailed)
			got, err := in.Apply(tt.typ, tt.reason, t1)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			want := Transition{Order: in}
			if tt.changed {
				next := in
				next.Status, next.Reason, next.PaymentFailed = tt.status, tt.wantReason, tt.wantFailed
				next.Version, next.UpdatedAt = in.Version+1, t1
				want = Transition{Order: next, Changed: true, Emit: tt.emit}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Apply(%s) =\n  %+v\nwant\n  %+v", tt.typ, got, want)
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  Status
		typ     event.Type
		reason  string
		wantErr error
	}{
		{name: "order.created", status: Pending, typ: event.OrderCreated, wantErr: ErrUnhandledEvent},
		{name: "order.confirmed", status: Pending, typ: event.OrderConfirmed, wantErr: ErrUnhandledEvent},
		{name: "order.cancelled", status: Cancelled, typ: event.OrderCancelled, wantErr: ErrUnhandledEvent},
		{name: "unknown type", status: Pending, typ: "order.exploded", wantErr: ErrUnhandledEvent},
		{name: "rejected without reason", status: Pending, typ: event.InventoryRejected, wantErr: ErrInvalidReason},
		{name: "rejected for payment", status: Pending, typ: event.InventoryRejected, reason: event.ReasonPaymentFailed, wantErr: ErrInvalidReason},
		{name: "rejected terminal bad reason", status: Confirmed, typ: event.InventoryRejected, reason: "bored", wantErr: ErrInvalidReason},
		{name: "unknown status", status: "LOST", typ: event.InventoryReserved, wantErr: ErrInvalidStatus},
		{name: "empty status", status: "", typ: event.PaymentCompleted, wantErr: ErrInvalidStatus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := order(tt.status, false).Apply(tt.typ, tt.reason, t1)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Apply: err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

type step struct {
	typ    event.Type
	reason string
}

// permutations returns every ordering of steps.
func permutations(steps []step) [][]step {
	if len(steps) <= 1 {
		return [][]step{append([]step(nil), steps...)}
	}
	var out [][]step
	for i := range steps {
		rest := append(append([]step(nil), steps[:i]...), steps[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]step{steps[i]}, p...))
		}
	}
	return out
}

// TestApplyConverges feeds each saga path's events in every order, each
// event twice, and checks that the order ends in the same state with its
// outcome emitted exactly once.
func TestApplyConverges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		events    []step
		status    Status
		reason    string
		failed    bool
		wantEmits []event.Type
	}{
		{name: "confirmed", events: []step{{typ: event.InventoryReserved}, {typ: event.PaymentCompleted}},
			status: Confirmed, wantEmits: []event.Type{event.OrderConfirmed}},
		{name: "out of stock", events: []step{{typ: event.InventoryRejected, reason: event.ReasonOutOfStock}},
			status: Cancelled, reason: event.ReasonOutOfStock, wantEmits: []event.Type{event.OrderCancelled}},
		{name: "payment declined", events: []step{{typ: event.InventoryReserved}, {typ: event.PaymentFailed}, {typ: event.InventoryReleased}},
			status: Cancelled, reason: event.ReasonPaymentFailed, failed: true, wantEmits: []event.Type{event.OrderCancelled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, perm := range permutations(tt.events) {
				o, err := New("o1", "c", []event.Item{{SKU: "a", Qty: 1, UnitPriceCents: 10}}, t0)
				if err != nil {
					t.Fatal(err)
				}
				var emits []event.Type
				for _, s := range perm {
					for range 2 { // every event delivered twice
						tr, err := o.Apply(s.typ, s.reason, t1)
						if err != nil {
							t.Fatalf("%v: Apply(%s): %v", perm, s.typ, err)
						}
						if tr.Emit != nil {
							emits = append(emits, tr.Emit.EventType())
						}
						o = tr.Order
					}
				}
				if o.Status != tt.status || o.Reason != tt.reason || o.PaymentFailed != tt.failed {
					t.Errorf("%v: ended %s reason %q payment_failed %t, want %s %q %t",
						perm, o.Status, o.Reason, o.PaymentFailed, tt.status, tt.reason, tt.failed)
				}
				if !reflect.DeepEqual(emits, tt.wantEmits) {
					t.Errorf("%v: emitted %v, want %v", perm, emits, tt.wantEmits)
				}
			}
		})
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s               Status
		valid, terminal bool
	}{
		{Pending, true, false},
		{Reserved, true, false},
		{Confirmed, true, true},
		{Cancelled, true, true},
		{"pending", false, false},
		{"", false, false},
	}
	for _, tt := range tests {
		if got := tt.s.Valid(); got != tt.valid {
			t.Errorf("%q.Valid() = %t, want %t", tt.s, got, tt.valid)
		}
		if got := tt.s.Terminal(); got != tt.terminal {
			t.Errorf("%q.Terminal() = %t, want %t", tt.s, got, tt.terminal)
		}
	}
}
