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
// one-by-one handler and, on a second schema with the same stock, through
// the set-based one (in one batch, or cut in pieces): the stock, every
// reservation and its lines, and the outgoing events come out the same.
// The stream holds competing orders for a scarce SKU, an unknown SKU, a
// repeated order.created with a new id, releases and commits (of held,
// rejected and unknown orders), and an order both created and released in
// one batch.
func TestHandleBatchMatchesHandle(t *testing.T) {
	t.Parallel()
	seed := map[string]int{"scarce": 5, "plenty": 1000, "other": 40}
	var events []event.Event
	add := func(es ...event.Event) { events = append(events, es...) }
	add(created(t, "o1", item("scarce", 3, 100), item("plenty", 2, 10)))
	add(created(t, "o2", item("scarce", 3, 100))) // short: o1 holds 3 of 5
	add(created(t, "o3", item("plenty", 1, 10), item("scarce", 2, 100), item("plenty", 4, 10)))
	add(created(t, "o4", item("nosuch", 1, 10), item("plenty", 1, 10)))
	add(created(t, "o1", item("other", 1, 1))) // re-emitted with a new id: no-op
	add(created(t, "o5", item("other", 40, 5)))
	add(created(t, "o6", item("other", 1, 5))) // short: o5 took all
	add(paymentFailed(t, "o1"))                // releases o1's 3 scarce and 2 plenty
	add(created(t, "o7", item("scarce", 3, 100)))
	add(confirmed(t, "o3"))
	add(confirmed(t, "o2"))     // rejected: no-op
	add(paymentFailed(t, "o9")) // unknown: no-op
	add(paymentFailed(t, "o1")) // released already: no-op
	add(confirmed(t, "o5"))
	add(cancelledEvent(t, "o7", event.ReasonTimeout))    // held: released
	add(cancelledEvent(t, "o8", event.ReasonTimeout))    // before its order.created: CANCELLED
	add(created(t, "o8", item("plenty", 5, 10)))         // late: reserves nothing
	add(cancelledEvent(t, "o2", event.ReasonOutOfStock)) // rejected: no-op
	add(cancelledEvent(t, "o7", event.ReasonTimeout))    // released already: no-op

	one := setup(t, seed)
	for _, e := range events {
		one.mustApply(t, e)
	}
	for _, cuts := range [][]int{{len(events)}, {4, 9, len(events)}, {1, 2, 3, 5, 8, 13, len(events)}} {
		set := setup(t, seed)
		from := 0
		for _, to := range cuts {
			set.applyBatch(t, events[from:to])
			from = to
		}
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
			if got[i].Type != want[i].Type || got[i].OrderID != want[i].OrderID || got[i].CausationID != want[i].CausationID ||
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
