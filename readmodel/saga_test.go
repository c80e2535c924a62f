package readmodel

import (
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/event"
)

// t0 is when every test saga begins.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

var testItems = []event.Item{
	{SKU: "sku-1", Qty: 2, UnitPriceCents: 1250},
	{SKU: "sku-2", Qty: 1, UnitPriceCents: 499},
}

const testTotal = 2*1250 + 499

// path names a way a saga can go.
type path string

const (
	pathConfirmed     path = "confirmed"
	pathPaymentFailed path = "payment failed"
	pathOutOfStock    path = "out of stock"
)

var paths = []path{pathConfirmed, pathPaymentFailed, pathOutOfStock}

// sagaTypes returns the event types of a path, in causal order.
func sagaTypes(p path) []event.Type {
	switch p {
	case pathConfirmed:
		return []event.Type{event.OrderCreated, event.InventoryReserved, event.PaymentCompleted, event.OrderConfirmed}
	case pathPaymentFailed:
		return []event.Type{event.OrderCreated, event.InventoryReserved, event.PaymentFailed,
			event.InventoryReleased, event.OrderCancelled}
	case pathOutOfStock:
		return []event.Type{event.OrderCreated, event.InventoryRejected, event.OrderCancelled}
	}
	panic("unknown path " + p)
}

// payload returns a valid payload of type typ for the order; the reason of
// order.cancelled depends on the path.
func payload(typ event.Type, orderID string, p path) event.Payload {
	switch typ {
	case event.OrderCreated:
		return event.OrderCreatedPayload{OrderID: orderID, CustomerID: "cust-7", Items: testItems, TotalCents: testTotal}
	case event.InventoryReserved:
		return event.InventoryReservedPayload{OrderID: orderID, Items: testItems, TotalCents: testTotal}
	case event.InventoryRejected:
		return event.InventoryRejectedPayload{OrderID: orderID, Reason: event.ReasonOutOfStock, SKU: "sku-2"}
	case event.PaymentCompleted:
		return event.PaymentCompletedPayload{OrderID: orderID, PaymentID: "pay-1", AmountCents: testTotal}
	case event.PaymentFailed:
		return event.PaymentFailedPayload{OrderID: orderID, Reason: "card_declined", AmountCents: testTotal}
	case event.InventoryReleased:
		return event.InventoryReleasedPayload{OrderID: orderID, Items: testItems}
	case event.OrderConfirmed:
		return event.OrderConfirmedPayload{OrderID: orderID, TotalCents: testTotal}
	case event.OrderCancelled:
		reason := event.ReasonPaymentFailed
		if p == pathOutOfStock {
			reason = event.ReasonOutOfStock
		}
		return event.OrderCancelledPayload{OrderID: orderID, Reason: reason}
	}
	panic("no payload for " + typ)
}

// saga returns the events of one order along path p, in causal order, each
// caused by the one before and occurring 10ms after it.
func saga(t testing.TB, orderID string, p path) []event.Event {
	t.Helper()
	var out []event.Event
	cause := ""
	for i, typ := range sagaTypes(p) {
		e, err := event.New(typ, orderID, cause, payload(typ, orderID, p), t0.Add(time.Duration(i)*10*time.Millisecond))
		if err != nil {
			t.Fatalf("event.New(%s): %v", typ, err)
		}
		out = append(out, e)
		cause = e.ID
	}
	return out
}

// reemit returns e again with a new id (the same order, type and body)
// occurring at at: what a producer that re-ran its step would publish.
func reemit(t testing.TB, e event.Event, at time.Time) event.Event {
	t.Helper()
	p, err := event.DecodePayload(e.Type, e.Body)
	if err != nil {
		t.Fatal(err)
	}
	r, err := event.New(e.Type, e.OrderID, e.CausationID, p, at)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// recorded turns events into what the store would hold, each projected lag
// after it occurred.
func recorded(events []event.Event, lag time.Duration) []Recorded {
	out := make([]Recorded, 0, len(events))
	for _, e := range events {
		out = append(out, Recorded{
			EventID: e.ID, Type: e.Type, OrderID: e.OrderID, CausationID: e.CausationID,
			OccurredAt: e.OccurredAt, ProjectedAt: e.OccurredAt.Add(lag), Body: e.Body,
		})
	}
	return out
}

// permutations calls f with every ordering of s (Heap's algorithm), on a
// copy that f may keep.
func permutations[T any](s []T, f func([]T)) {
	a := append([]T(nil), s...)
	var generate func(k int)
	generate = func(k int) {
		if k <= 1 {
			f(append([]T(nil), a...))
			return
		}
		for i := range k {
			generate(k - 1)
			if i < k-1 {
				if k%2 == 0 {
					a[i], a[k-1] = a[k-1], a[i]
				} else {
					a[0], a[k-1] = a[k-1], a[0]
				}
			}
		}
	}
	generate(len(a))
}

func TestPermutations(t *testing.T) {
	t.Parallel()

	seen := map[[4]int]bool{}
	permutations([]int{1, 2, 3, 4}, func(p []int) { seen[[4]int(p)] = true })
	if len(seen) != 24 {
		t.Fatalf("got %d distinct permutations of 4, want 24", len(seen))
	}
}
