package e2e_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

const declineOver = 10_000 // cents

func defaultWorld(t *testing.T) *world {
	return newWorld(t, worldOptions{
		seedStock:        map[string]int{"sku-a": 100, "sku-b": 100, "sku-scarce": 1},
		declineOverCents: declineOver,
	})
}

// stock returns initial/available/reserved/sold of a SKU.
func (w *world) stock(sku string) string {
	return w.scalar(`SELECT format('%s/%s/%s/%s', initial, available, reserved, sold) FROM inventory.stock WHERE sku = $1`, sku)
}

func TestSagaPaths(t *testing.T) {
	t.Parallel()
	w := defaultWorld(t)

	confirmed := w.place("c1", item{"sku-a", 2, 1999}, item{"sku-b", 1, 500})
	declined := w.place("c2", item{"sku-b", 3, 5000}) // 15000 > declineOver
	outOfStock := w.place("c3", item{"sku-a", 1, 100}, item{"sku-scarce", 2, 100})
	w.waitTerminal(confirmed, declined, outOfStock)

	t.Run("confirmed", func(t *testing.T) {
		if got := w.orderStatus(confirmed); got != "CONFIRMED/" {
			t.Errorf("order service: %s", got)
		}
		if got := w.viewStatus(confirmed); got != "CONFIRMED/" {
			t.Errorf("read model: %s", got)
		}
		if got := w.scalar(`SELECT status FROM inventory.reservations WHERE order_id = $1`, confirmed); got != "COMMITTED" {
			t.Errorf("reservation: %s", got)
		}
		if got := w.scalar(`SELECT status || ' ' || amount_cents FROM payment.payments WHERE order_id = $1`, confirmed); got != "COMPLETED 4498" {
			t.Errorf("payment: %s", got)
		}
		if got := w.scalar(`SELECT total_cents::text FROM readmodel.order_views WHERE order_id = $1`, confirmed); got != "4498" {
			t.Errorf("read model total: %s", got)
		}
		w.wantSequence(confirmed, map[string][]event.Type{
			stream.Orders:    {event.OrderCreated, event.OrderConfirmed},
			stream.Inventory: {event.InventoryReserved},
			stream.Payments:  {event.PaymentCompleted},
		})
	})
	t.Run("payment declined, stock released", func(t *testing.T) {
		if got := w.orderStatus(declined); got != "CANCELLED/payment_failed" {
			t.Errorf("order service: %s", got)
		}
		if got := w.viewStatus(declined); got != "CANCELLED/payment_failed" {
			t.Errorf("read model: %s", got)
		}
		if got := w.scalar(`SELECT status FROM inventory.reservations WHERE order_id = $1`, declined); got != "RELEASED" {
			t.Errorf("reservation: %s", got)
		}
		if got := w.scalar(`SELECT status FROM payment.payments WHERE order_id = $1`, declined); got != "FAILED" {
			t.Errorf("payment: %s", got)
		}
		w.wantSequence(declined, map[string][]event.Type{
			stream.Orders:    {event.OrderCreated, event.OrderCancelled},
			stream.Inventory: {event.InventoryReserved, event.InventoryReleased},
			stream.Payments:  {event.PaymentFailed},
		})
	})
	t.Run("out of stock, nothing held", func(t *testing.T) {
		if got := w.orderStatus(outOfStock); got != "CANCELLED/out_of_stock" {
			t.Errorf("order service: %s", got)
		}
		if got := w.viewStatus(outOfStock); got != "CANCELLED/out_of_stock" {
			t.Errorf("read model: %s", got)
		}
		if got := w.scalar(`SELECT status FROM inventory.reservations WHERE order_id = $1`, outOfStock); got != "REJECTED" {
			t.Errorf("reservation: %s", got)
		}
		if got := w.scalar(`SELECT count(*)::text FROM payment.payments WHERE order_id = $1`, outOfStock); got != "0" {
			t.Errorf("payments: %s", got)
		}
		w.wantSequence(outOfStock, map[string][]event.Type{
			stream.Orders:    {event.OrderCreated, event.OrderCancelled},
			stream.Inventory: {event.InventoryRejected},
		})
	})
	// Stock: sku-a sold 2 (the out-of-stock order held nothing of it),
	// sku-b sold 1 and got the declined 3 back, the scarce one untouched.
	for sku, want := range map[string]string{"sku-a": "100/98/0/2", "sku-b": "100/99/0/1", "sku-scarce": "1/1/0/0"} {
		if got := w.stock(sku); got != want {
			t.Errorf("stock %s = %s, want initial/available/held/sold %s", sku, got, want)
		}
	}
	w.checkInvariants()
}

// Every event of finished sagas delivered again — once with the same event
// id past the duplicate window (a new stream message), once re-emitted with a
// new id — changes nothing anywhere.
func TestEveryEventDeliveredTwiceHasOneEffect(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{
		seedStock:        map[string]int{"sku-a": 100, "sku-scarce": 1},
		declineOverCents: declineOver,
		dupWindow:        200 * time.Millisecond,
	})
	ids := []string{
		w.place("c1", item{"sku-a", 1, 100}),
		w.place("c2", item{"sku-a", 2, 6000}),
		w.place("c3", item{"sku-scarce", 5, 100}),
	}
	ids = append(ids, w.placeTimedOutAfterCharge("c4", item{"sku-a", 1, 300}))
	w.waitTerminal(ids...)
	w.checkInvariants()
	before := w.snapshot()

	var originals []*jetstream.RawStreamMsg
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		originals = append(originals, w.streamMsgs(name)...)
	}
	seen := map[event.Type]bool{}
	for _, m := range originals {
		e, err := event.FromMsg(m.Subject, m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		seen[e.Type] = true
		// The same id, past the stream's duplicate window.
		testenv.WaitFor(t, 10*time.Second, "a republish past the duplicate window", func() bool {
			ack, err := w.js.PublishMsg(context.Background(), e.Msg())
			return err == nil && !ack.Duplicate
		})
		// Re-emitted: a new id for the same effect.
		again, err := event.New(e.Type, e.OrderID, e.CausationID, mustPayload(t, e), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.js.PublishMsg(context.Background(), again.Msg()); err != nil {
			t.Fatal(err)
		}
	}
	for _, typ := range event.Types() {
		if !seen[typ] {
			t.Fatalf("the sagas produced no %s to deliver twice", typ)
		}
	}
	waitQuiet(t, w)
	after := w.snapshot()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed after redeliveries:\n before %s\n after  %s", k, v, after[k])
		}
	}
	// Nothing new was emitted: each stream holds the originals and the two copies.
	var total int
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		total += len(w.streamMsgs(name))
	}
	if total != 3*len(originals) {
		t.Errorf("streams hold %d messages, want %d (originals and two copies each, no new events)", total, 3*len(originals))
	}
}

func mustPayload(t *testing.T, e event.Event) event.Payload {
	t.Helper()
	p, err := event.DecodePayload(e.Type, e.Body)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitQuiet waits until every consumer handled everything.
func waitQuiet(t *testing.T, w *world) {
	t.Helper()
	testenv.WaitFor(t, 60*time.Second, "every consumer caught up", func() bool {
		for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
			s, err := w.js.Stream(context.Background(), name)
			if err != nil {
				return false
			}
			for c := range s.ListConsumers(context.Background()).Info() {
				if c.NumPending > 0 || c.NumAckPending > 0 {
					return false
				}
			}
		}
		return true
	})
}

// snapshot is every row of every schema's state tables, as text.
func (w *world) snapshot() map[string]string {
	w.t.Helper()
	out := map[string]string{}
	for name, sql := range map[string]string{
		"orders":       `SELECT string_agg(format('%s %s %s %s', order_id, status, reason, version), '; ' ORDER BY order_id) FROM orders.orders`,
		"stock":        `SELECT string_agg(format('%s %s %s %s %s', sku, initial, available, reserved, sold), '; ' ORDER BY sku) FROM inventory.stock`,
		"reservations": `SELECT string_agg(format('%s %s', order_id, status), '; ' ORDER BY order_id) FROM inventory.reservations`,
		"payments":     `SELECT string_agg(format('%s %s %s %s', order_id, payment_id, status, amount_cents), '; ' ORDER BY order_id) FROM payment.payments`,
		"views":        `SELECT string_agg(format('%s %s %s %s', order_id, status, reason, total_cents), '; ' ORDER BY order_id) FROM readmodel.order_views`,
		"outboxes":     `SELECT (SELECT count(*) FROM orders.outbox) + (SELECT count(*) FROM inventory.outbox) + (SELECT count(*) FROM payment.outbox) + (SELECT count(*) FROM readmodel.outbox)`,
	} {
		out[name] = w.scalar(`SELECT coalesce((` + sql + `)::text, '')`)
	}
	return out
}

// A service stopped in the middle of sagas (as SIGTERM would) and started
// again: the sagas wait for it and then complete.
func TestServiceRestartMidSaga(t *testing.T) {
	t.Parallel()
	w := defaultWorld(t)
	w.stop("payment")
	var ids []string
	for i := range 10 {
		ids = append(ids, w.place(fmt.Sprintf("c%d", i), item{"sku-a", 1, int64(1000 * (i + 1))}))
	}
	testenv.WaitFor(t, 30*time.Second, "orders reserved and waiting for payment", func() bool {
		return w.scalar(`SELECT count(*)::text FROM inventory.reservations WHERE order_id = ANY($1) AND status = 'HELD'`, ids) == "10"
	})
	if got := w.scalar(`SELECT count(*)::text FROM orders.orders WHERE order_id = ANY($1) AND status IN ('CONFIRMED','CANCELLED')`, ids); got != "0" {
		t.Fatalf("%s orders ended without the payment service", got)
	}
	w.start("payment")
	w.waitTerminal(ids...)
	// Totals 1000..10000 cents: none over the decline limit.
	if got := w.scalar(`SELECT count(*)::text FROM orders.orders WHERE order_id = ANY($1) AND status = 'CONFIRMED'`, ids); got != "10" {
		t.Errorf("confirmed = %s, want 10", got)
	}
	w.checkInvariants()
}
