package order

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jetsaga/jetsaga/internal/event"
)

// Status is where an order stands in the saga.
type Status string

// The order states. CONFIRMED and CANCELLED are terminal.
const (
	Pending   Status = "PENDING"
	Reserved  Status = "RESERVED"
	Confirmed Status = "CONFIRMED"
	Cancelled Status = "CANCELLED"
)

// Terminal reports whether no event moves an order in status s any more.
func (s Status) Terminal() bool { return s == Confirmed || s == Cancelled }

// Valid reports whether s is one of the four states.
func (s Status) Valid() bool {
	switch s {
	case Pending, Reserved, Confirmed, Cancelled:
		return true
	}
	return false
}

// Limits on a new order, the same as the event contract's.
const (
	MaxItems    = 50
	MaxQty      = 1000
	maxTokenLen = 64
)

// Order is the order service's state of one order.
type Order struct {
	ID            string
	CustomerID    string
	Items         []event.Item
	TotalCents    int64
	Status        Status
	Reason        string // "" unless cancelled: out_of_stock, unknown_sku, payment_failed, timeout or unknown_order
	PaymentFailed bool   // a payment.failed (or the release it causes) was seen
	Version       int    // 1 when placed, +1 on every change
	CreatedAt     time.Time
	UpdatedAt     time.Time
	// Deadline is when an order still PENDING or RESERVED is cancelled
	// with reason timeout (Expire); zero for none.
	Deadline time.Time
	// CreatedEventID is the id of the order's order.created, the cause of
	// a timeout's order.cancelled; "" for orders placed before it was kept.
	CreatedEventID string
	// Trace is the order.created's trace context (zero when untraced),
	// which a timeout's order.cancelled travels with.
	Trace event.TraceContext
}

// Domain errors, matched with errors.Is.
var (
	// ErrUnhandledEvent: the order service does not consume this event type.
	ErrUnhandledEvent = errors.New("event type not handled by the order service")
	// ErrInvalidReason: an inventory.rejected reason the order cannot record.
	ErrInvalidReason = errors.New("invalid rejection reason")
	// ErrInvalidStatus: the order is in no known state.
	ErrInvalidStatus = errors.New("invalid order status")
	// ErrDisagrees: an event says something of the order that contradicts
	// what the order service knows (another amount, other items): a
	// forgery or a bug, dead-lettered with the reason.
	ErrDisagrees = errors.New("event disagrees with the order")
	// ErrTooEarly: an event that needs a step the order has not seen yet
	// (payment.completed before inventory.reserved, inventory.released
	// before payment.failed). Genuine events can arrive in that order, as
	// they come on two consumers: the event is retried until the step is
	// seen, the order ends, or it has failed --max-deliver times.
	ErrTooEarly = errors.New("event comes before the step it follows")
)

// Facts is what an event tells the order service and the service can
// check: the amount of a payment event, the items of an inventory event.
type Facts struct {
	AmountCents int64        // payment.completed, payment.failed; inventory.reserved's total
	Items       []event.Item // inventory.reserved, inventory.released
}

// Verify checks an event of type t against what the order service knows
// of o, before Apply: defence in depth against forged events and bugs
// (docs/DESIGN.md, "Every hop checks what it is told").
//
//	inventory.reserved  its items and total are the order's
//	payment.completed   its amount is the order's total; and the order is
//	                    RESERVED (PENDING: ErrTooEarly)
//	payment.failed      its amount is the order's total; and the order is
//	                    RESERVED (PENDING: ErrTooEarly)
//	inventory.released  it gives back the order's lines; and payment.failed
//	                    was seen (else ErrTooEarly)
//
// A contradiction is ErrDisagrees, whatever the order's state. The ordering
// checks apply only to an order still in flight: for a terminal one, the
// event is a no-op anyway.
func (o Order) Verify(t event.Type, f Facts) error {
	switch t {
	case event.InventoryReserved:
		if f.AmountCents != o.TotalCents || !sameLines(f.Items, o.Items, true) {
			return fmt.Errorf("%w: %s of %d cents for items %s, the order is %d cents for %s",
				ErrDisagrees, t, f.AmountCents, itemsString(f.Items, true), o.TotalCents, itemsString(o.Items, true))
		}
	case event.PaymentCompleted, event.PaymentFailed:
		if f.AmountCents != o.TotalCents {
			return fmt.Errorf("%w: %s of %d cents, the order's total is %d", ErrDisagrees, t, f.AmountCents, o.TotalCents)
		}
		if o.Status == Pending {
			return fmt.Errorf("%w: %s for order %s, whose reservation is not seen yet", ErrTooEarly, t, o.ID)
		}
	case event.InventoryReleased:
		if !sameLines(f.Items, o.Items, false) {
			return fmt.Errorf("%w: %s of %s, the order holds %s", ErrDisagrees, t, itemsString(f.Items, false), itemsString(o.Items, false))
		}
		if !o.Status.Terminal() && !o.PaymentFailed {
			return fmt.Errorf("%w: %s for order %s, whose payment.failed is not seen yet", ErrTooEarly, t, o.ID)
		}
	}
	return nil
}

// sameLines reports whether a and b order the same quantity of each SKU
// (and, with prices, at the same unit prices).
func sameLines(a, b []event.Item, prices bool) bool {
	type key struct {
		sku   string
		price int64
	}
	sum := func(items []event.Item) map[key]int {
		m := make(map[key]int, len(items))
		for _, it := range items {
			k := key{sku: it.SKU}
			if prices {
				k.price = it.UnitPriceCents
			}
			m[k] += it.Qty
		}
		return m
	}
	ma, mb := sum(a), sum(b)
	if len(ma) != len(mb) {
		return false
	}
	for k, n := range ma {
		if mb[k] != n {
			return false
		}
	}
	return true
}

// itemsString shows items for an error, at most the first 5.
func itemsString(items []event.Item, prices bool) string {
	var b []byte
	for i, it := range items {
		if i == 5 {
			b = fmt.Appendf(b, " …(%d)", len(items))
			break
		}
		if i > 0 {
			b = append(b, ' ')
		}
		b = fmt.Appendf(b, "%s×%d", it.SKU, it.Qty)
		if prices {
			b = fmt.Appendf(b, "@%d", it.UnitPriceCents)
		}
	}
	return "[" + string(b) + "]"
}

// ValidationError says which fields of a new order are invalid and why, keyed
// by field path: "customer_id", "items", "items[2].qty".
type ValidationError struct {
	Fields map[string]string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid order: %d invalid field(s)", len(e.Fields))
}

// New validates a new order and returns it PENDING at version 1, with its
// total computed: 1 to MaxItems items, qty 1 to MaxQty, SKU and customer id 1
// to 64 chars of [A-Za-z0-9_-], unit price >= 0, and a total that fits in
// int64. An invalid order yields a *ValidationError naming every bad field.
func New(id, customerID string, items []event.Item, now time.Time) (Order, error) {
	fields := map[string]string{}
	if !validToken(customerID) {
		fields["customer_id"] = "must be 1-64 chars of [A-Za-z0-9_-]"
	}
	if len(items) < 1 || len(items) > MaxItems {
		fields["items"] = fmt.Sprintf("must hold 1-%d items", MaxItems)
	}
	var total int64
	overflow := false
	for i, it := range items {
		ok := true
		if !validToken(it.SKU) {
			fields[fmt.Sprintf("items[%d].sku", i)] = "must be 1-64 chars of [A-Za-z0-9_-]"
			ok = false
		}
		if it.Qty < 1 || it.Qty > MaxQty {
			fields[fmt.Sprintf("items[%d].qty", i)] = fmt.Sprintf("must be 1-%d", MaxQty)
			ok = false
		}
		if it.UnitPriceCents < 0 {
			fields[fmt.Sprintf("items[%d].unit_price_cents", i)] = "must be >= 0"
			ok = false
		}
		if !ok || overflow {
			continue
		}
		qty := int64(it.Qty)
		if it.UnitPriceCents > (math.MaxInt64-total)/qty {
			overflow = true
			continue
		}
		total += qty * it.UnitPriceCents
	}
	if overflow {
		if _, ok := fields["items"]; !ok {
			fields["items"] = "total price overflows"
		}
	}
	if len(fields) > 0 {
		return Order{}, &ValidationError{Fields: fields}
	}
	now = now.UTC()
	return Order{
		ID:         id,
		CustomerID: customerID,
		Items:      append([]event.Item(nil), items...),
		TotalCents: total,
		Status:     Pending,
		Version:    1,
		CreatedAt:  now,
		UpdatedAt:  now,
	}, nil
}

// Created returns the payload of the order.created event for o.
func (o Order) Created() event.OrderCreatedPayload {
	return event.OrderCreatedPayload{
		OrderID:    o.ID,
		CustomerID: o.CustomerID,
		Items:      o.Items,
		TotalCents: o.TotalCents,
	}
}

// Transition is what an event does to an order.
type Transition struct {
	// Order is the order after the event: the input itself when Changed is
	// false, else with the new state, Version+1 and UpdatedAt = now.
	Order   Order
	Changed bool
	// Emit is the event the order publishes because of this transition:
	// nil, an event.OrderConfirmedPayload or an event.OrderCancelledPayload.
	Emit event.Payload
}

// Apply decides what an event of type t does to o. reason is the
// inventory.rejected payload's reason (out_of_stock or unknown_sku) and is
// ignored for the other types. The state machine:
//
//	inventory.reserved  PENDING → RESERVED
//	inventory.rejected  PENDING|RESERVED → CANCELLED(reason), emits order.cancelled
//	payment.completed   PENDING|RESERVED → CONFIRMED, emits order.confirmed
//	payment.failed      PENDING|RESERVED: payment_failed = true, status unchanged
//	inventory.released  PENDING|RESERVED → CANCELLED(payment_failed) and
//	                    payment_failed = true, emits order.cancelled
//	payment.refunded    no-op: it follows an order.cancelled
//
// The deadline is not an event: see Expire.
//
// Every other combination — a terminal order, a duplicate, a late event — is
// a no-op (Changed false, nothing emitted), so the same events in any order
// and any number of times leave the same final state and emit each outcome
// once. An event type the order service does not consume is ErrUnhandledEvent.
func (o Order) Apply(t event.Type, reason string, now time.Time) (Transition, error) {
	if !o.Status.Valid() {
		return Transition{}, fmt.Errorf("%w: %q", ErrInvalidStatus, o.Status)
	}
	switch t {
	case event.InventoryReserved, event.InventoryRejected, event.PaymentCompleted,
		event.PaymentFailed, event.InventoryReleased:
	case event.PaymentRefunded:
		// The refund of a charge that completed after the order was
		// cancelled (a timeout): the order is CANCELLED already and
		// stays so; it has nothing to record.
		return Transition{Order: o}, nil
	default:
		return Transition{}, fmt.Errorf("%w: %s", ErrUnhandledEvent, t)
	}
	if t == event.InventoryRejected && reason != event.ReasonOutOfStock && reason != event.ReasonUnknownSKU {
		return Transition{}, fmt.Errorf("%w: %q", ErrInvalidReason, reason)
	}
	noop := Transition{Order: o}
	if o.Status.Terminal() {
		return noop, nil
	}

	next := o
	var emit event.Payload
	switch t {
	case event.InventoryReserved:
		if o.Status != Pending {
			return noop, nil
		}
		next.Status = Reserved
	case event.InventoryRejected:
		next.Status = Cancelled
		next.Reason = reason
		emit = event.OrderCancelledPayload{OrderID: o.ID, Reason: reason}
	case event.PaymentCompleted:
		next.Status = Confirmed
		emit = event.OrderConfirmedPayload{OrderID: o.ID, TotalCents: o.TotalCents}
	case event.PaymentFailed:
		if o.PaymentFailed {
			return noop, nil
		}
		next.PaymentFailed = true
	case event.InventoryReleased:
		next.Status = Cancelled
		next.Reason = event.ReasonPaymentFailed
		next.PaymentFailed = true
		emit = event.OrderCancelledPayload{OrderID: o.ID, Reason: event.ReasonPaymentFailed}
	}
	next.Version = o.Version + 1
	next.UpdatedAt = now.UTC()
	return Transition{Order: next, Changed: true, Emit: emit}, nil
}

// Expire decides what the order's deadline does to it at now: a PENDING or
// RESERVED order at or past its deadline becomes CANCELLED(timeout) and emits
// order.cancelled. A terminal order, one without a deadline or one before it
// is left alone (Changed false). An event that finishes the order first wins:
// the scheduler and the handlers lock the order's row, so whichever comes
// second sees the other's outcome.
func (o Order) Expire(now time.Time) Transition {
	if o.Status.Terminal() || !o.Status.Valid() || o.Deadline.IsZero() || now.Before(o.Deadline) {
		return Transition{Order: o}
	}
	next := o
	next.Status = Cancelled
	next.Reason = event.ReasonTimeout
	next.Version = o.Version + 1
	next.UpdatedAt = now.UTC()
	return Transition{Order: next, Changed: true, Emit: event.OrderCancelledPayload{OrderID: o.ID, Reason: event.ReasonTimeout}}
}

// validToken reports whether s is 1 to 64 bytes of [A-Za-z0-9_-].
func validToken(s string) bool {
	if len(s) == 0 || len(s) > maxTokenLen {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
