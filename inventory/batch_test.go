package inventory

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/jetsaga/jetsaga/internal/event"
)

// applyBatch runs the set-based handler over events in one transaction.
func (b bundle) applyBatch(t *testing.T, events []event.Event) {
	t.Helper()
	ctx := context.Background()
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := b.svc.handleBatch(ctx, tx, events); err != nil {
		t.Fatalf("handle a batch of %d: %v", len(events), err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestHandleBatchMatchesHandle runs one stream of events through the
// one-by-one handler (a batch of one each) and, on a second schema with the
// same stock, in batches (whole, or cut in pieces): the stock, every
// reservation and its lines, and the outgoing events come out the same.
// The stream holds competing orders for a scarce SKU, an unknown SKU, a
// repeated order.created with a new id, releases and commits (of held,
// released and rejected orders), and an order both created and released in
// one batch.
func TestHandleBatchMatchesHandle(t *testing.T) {
	t.Parallel()
	seed := map[string]int{"scarce": 5, "plenty": 1000, "other": 40}
	// The first part: reservations decided.
	var first []event.Event
	add := func(es ...event.Event) { first = append(first, es...) }
	add(created(t, "o1", item("scarce", 3, 100), item("plenty", 2, 10)))
	add(created(t, "o2", item("scarce", 3, 100))) // short: o1 holds 3 of 5
	add(created(t, "o3", item("plenty", 1, 10), item("scarce", 2, 100), item("plenty", 4, 10)))
	add(created(t, "o4", item("nosuch", 1, 10), item("plenty", 1, 10)))
	add(created(t, "o1", item("other", 1, 1))) // re-emitted with a new id: no-op
	add(created(t, "o5", item("other", 40, 5)))
	add(created(t, "o6", item("other", 1, 5))) // short: o5 took all
	o7 := created(t, "o7", item("scarce", 3, 100))
	add(cancelledEvent(t, "o8", newID(t), event.ReasonTimeout)) // before its order.created: CANCELLED
	add(created(t, "o8", item("plenty", 5, 10)))                // late: reserves nothing

	// The second part follows the reservations as each schema recorded them
	// (a payment.failed names the inventory.reserved it follows), with the
	// same event ids in both, so that the outgoing events compare.
	ids := make([]string, 8)
	for i := range ids {
		ids[i] = newID(t)
	}
	second := func(b bundle) []event.Event {
		_, o1Reserved, _ := b.facts(t, "o1")
		es := []event.Event{
			paymentFailedOf(t, "o1", o1Reserved, 320), // releases o1's 3 scarce and 2 plenty
			o7,
			b.confirmed(t, "o3"),
			paymentFailedOf(t, "o1", o1Reserved, 320), // released already: no-op
			b.confirmed(t, "o5"),
			cancelledEvent(t, "o7", o7.ID, event.ReasonTimeout),       // held: released
			cancelledEvent(t, "o2", newID(t), event.ReasonOutOfStock), // rejected: no-op
			cancelledEvent(t, "o7", o7.ID, event.ReasonTimeout),       // released already: no-op
		}
		for i := range es {
			if es[i].ID != o7.ID {
				es[i].ID = ids[i]
			}
		}
		return es
	}

	one := setup(t, seed)
	for _, e := range first {
		one.mustApply(t, e)
	}
	for _, e := range second(one) {
		one.mustApply(t, e)
	}
	for _, cuts := range [][]int{{len(first)}, {4, 9, len(first)}, {1, 2, 3, 5, 8, len(first)}} {
		set := setup(t, seed)
		from := 0
		for _, to := range cuts {
			set.applyBatch(t, first[from:to])
			from = to
		}
		rest := second(set)
		set.applyBatch(t, rest[:3])
		set.applyBatch(t, rest[3:])
		if got, want := set.stock(t), one.stock(t); !maps.Equal(got, want) {
			t.Errorf("cuts %v: stock %v set-based, %v one by one", cuts, got, want)
		}
		for _, id := range []string{"o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9"} {
			gs, gr := set.reservation(t, id)
			ws, wr := one.reservation(t, id)
			if gs != ws || gr != wr {
				t.Errorf("cuts %v: reservation %s is %s %q set-based, %s %q one by one", cuts, id, gs, gr, ws, wr)
			}
			if g, w := set.lines(t, id), one.lines(t, id); !slices.Equal(g, w) {
				t.Errorf("cuts %v: lines of %s are %v set-based, %v one by one", cuts, id, g, w)
			}
		}
		got, want := set.outbox(t), one.outbox(t)
		if len(got) != len(want) {
			t.Fatalf("cuts %v: %d events set-based, %d one by one", cuts, len(got), len(want))
		}
		for i := range want {
			if got[i].Type != want[i].Type || got[i].OrderID != want[i].OrderID ||
				(got[i].Type != event.InventoryReserved && got[i].CausationID != want[i].CausationID) ||
				!sameJSON(t, got[i].Body, want[i].Body) {
				t.Errorf("cuts %v: event %d is %s %s %s, want %s %s %s", cuts, i,
					got[i].Type, got[i].OrderID, got[i].Body, want[i].Type, want[i].OrderID, want[i].Body)
			}
		}
	}
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
