package e2e_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/dlq"
	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
	"github.com/jetsaga/jetsaga/payment"
)

// The payment handler fails (a trigger refuses every payment, as a
// misconfigured gateway would) until it is fixed: inventory.reserved is
// dead-lettered by payment-inventory and the order waits, RESERVED. After
// the fix, jetsaga dlq replay hands it to payment-inventory alone: one
// payment, the order CONFIRMED, the dead letter gone, a second replay does
// nothing, and every invariant holds.
func TestDeadLetterReplayedAfterTheFix(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{seedStock: map[string]int{"sku-a": 10}, declineOverCents: declineOver, maxDeliver: 2})
	ctx := context.Background()
	if _, err := w.db.Exec(ctx, `
		CREATE FUNCTION payment.refuse() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN RAISE EXCEPTION 'card gateway misconfigured'; END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON payment.payments FOR EACH ROW EXECUTE FUNCTION payment.refuse();`); err != nil {
		t.Fatal(err)
	}
	id := w.place("c1", item{"sku-a", 1, 100})
	var entries []dlq.Entry
	testenv.WaitFor(t, 60*time.Second, "the payment dead-lettered", func() bool {
		var err error
		entries, err = dlq.List(ctx, w.js, "")
		return err == nil && len(entries) == 1
	})
	e := entries[0]
	if e.Service != payment.Name || e.Consumer != payment.ConsumerInventory || e.OrderID != id ||
		!strings.Contains(e.Error, "card gateway misconfigured") || e.Replayable() != nil {
		t.Fatalf("dead letter = %+v", e)
	}
	if got := w.orderStatus(id); got != "RESERVED/" {
		t.Fatalf("order %s is %s while its payment is dead-lettered, want RESERVED", id, got)
	}

	if _, err := w.db.Exec(ctx, `DROP TRIGGER refuse ON payment.payments`); err != nil {
		t.Fatal(err)
	}
	var outs []dlq.Outcome
	if err := dlq.Replay(ctx, w.js, nil, dlq.Options{}, func(o dlq.Outcome) { outs = append(outs, o) }); err != nil {
		t.Fatal(err)
	}
	if len(outs) != 1 || !outs[0].Replayed {
		t.Fatalf("replay --all = %+v", outs)
	}
	w.waitTerminal(id)
	if got := w.orderStatus(id); got != "CONFIRMED/" {
		t.Fatalf("order %s is %s after the replay, want CONFIRMED", id, got)
	}
	if n := w.scalar(`SELECT count(*)::text FROM payment.payments WHERE order_id = $1`, id); n != "1" {
		t.Errorf("%s payments for order %s, want 1", n, id)
	}
	if es, err := dlq.List(ctx, w.js, ""); err != nil || len(es) != 0 {
		t.Errorf("DLQ after the replay: %+v, %v", es, err)
	}
	outs = nil
	if err := dlq.Replay(ctx, w.js, nil, dlq.Options{}, func(o dlq.Outcome) { outs = append(outs, o) }); err != nil || len(outs) != 0 {
		t.Errorf("a second replay --all did %+v, %v; want nothing", outs, err)
	}
	// Only payment's replay consumer got it.
	for _, svc := range serviceNames {
		c, err := w.js.Consumer(ctx, stream.Replay, consume.ReplayDurable(svc))
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Delivered.Consumer; (svc == payment.Name) != (got > 0) {
			t.Errorf("%s got %d replays", consume.ReplayDurable(svc), got)
		}
	}
	w.checkInvariants()
}
