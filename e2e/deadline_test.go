package e2e_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/fault"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// The deadline races (docs/DESIGN.md, "Deadlines"). Each test holds one
// service back — slowed by the delay fault, or stopped — so that the
// order's deadline passes at a chosen point of its saga, then lets the saga
// run out and asserts every effect and every invariant.

const testDeadline = 300 * time.Millisecond

func deadlineWorld(t *testing.T, faultsFor map[string]fault.Config) *world {
	return newWorld(t, worldOptions{
		seedStock:    map[string]int{"sku-a": 100},
		sagaDeadline: testDeadline,
		faultsFor:    faultsFor,
	})
}

// waitScalar waits until sql, run with the order id, returns want.
func (w *world) waitScalar(what, want, sql string, args ...any) {
	w.t.Helper()
	var got string
	testenv.WaitFor(w.t, 60*time.Second, what+" = "+want, func() bool {
		got = w.scalar(sql, args...)
		return got == want
	})
}

// TestTimeoutAfterTheChargeRefunds: the order service is slow (every event
// it handles waits 1.5s), so the deadline passes after payment completed and
// before the order confirmed: the order is cancelled (timeout), the charge is
// refunded, the stock released; the late payment.completed changes nothing.
func TestTimeoutAfterTheChargeRefunds(t *testing.T) {
	t.Parallel()
	w := deadlineWorld(t, map[string]fault.Config{"order": {Delay: 1500 * time.Millisecond}})
	id := w.place("c1", item{"sku-a", 3, 1000})
	w.waitTerminal(id)
	if got := w.orderStatus(id); got != "CANCELLED/timeout" {
		t.Fatalf("order %s, want CANCELLED/timeout", got)
	}
	w.waitScalar("payment", "REFUNDED 3000", `SELECT status || ' ' || amount_cents FROM payment.payments WHERE order_id = $1`, id)
	w.waitScalar("reservation", "RELEASED", `SELECT status FROM inventory.reservations WHERE order_id = $1`, id)
	w.checkInvariants()
	if got := w.stock("sku-a"); got != "100/100/0/0" {
		t.Errorf("stock %s, want 100/100/0/0", got)
	}
	if got := w.viewStatus(id); got != "CANCELLED/timeout" {
		t.Errorf("read model %s, want CANCELLED/timeout", got)
	}
	w.wantSequence(id, map[string][]event.Type{
		stream.Orders:    {event.OrderCreated, event.OrderCancelled},
		stream.Inventory: {event.InventoryReserved, event.InventoryReleased},
		stream.Payments:  {event.PaymentCompleted, event.PaymentRefunded},
	})
	// The read model's timeline shows all six, each after its cause.
	tl := w.scalar(`SELECT string_agg(s->>'event_type', ' ' ORDER BY n)
		FROM readmodel.order_views, jsonb_array_elements(timeline) WITH ORDINALITY AS t(s, n) WHERE order_id = $1`, id)
	for _, typ := range []event.Type{event.OrderCreated, event.InventoryReserved, event.PaymentCompleted,
		event.OrderCancelled, event.InventoryReleased, event.PaymentRefunded} {
		if !slices.Contains(strings.Fields(tl), string(typ)) {
			t.Errorf("read model timeline %q lacks %s", tl, typ)
		}
	}
	if i, j := slices.Index(strings.Fields(tl), string(event.OrderCancelled)), slices.Index(strings.Fields(tl), string(event.PaymentRefunded)); i < 0 || j < i {
		t.Errorf("read model timeline %q: payment.refunded before its cause order.cancelled", tl)
	}
}

// TestTimeoutBeforeTheChargeChargesNothing: payment is down while the
// deadline passes; the stock is released at once, and when payment comes
// back the late inventory.reserved and the order.cancelled leave no net
// charge, whichever it handles first.
func TestTimeoutBeforeTheChargeChargesNothing(t *testing.T) {
	t.Parallel()
	w := deadlineWorld(t, nil)
	w.stop("payment")
	id := w.place("c1", item{"sku-a", 2, 500})
	w.waitScalar("order", "CANCELLED/timeout", `SELECT status || '/' || reason FROM orders.orders WHERE order_id = $1`, id)
	w.waitScalar("reservation", "RELEASED", `SELECT status FROM inventory.reservations WHERE order_id = $1`, id)
	if got := w.stock("sku-a"); got != "100/100/0/0" {
		t.Errorf("stock %s while payment is down, want 100/100/0/0", got)
	}
	w.start("payment")
	testenv.WaitFor(t, 60*time.Second, "payment settled", func() bool {
		s := w.scalar(`SELECT coalesce((SELECT status FROM payment.payments WHERE order_id = $1), '')`, id)
		return s == "REFUNDED" || s == "CANCELLED"
	})
	w.waitTerminal(id)
	w.checkInvariants()
	if got := w.orderStatus(id); got != "CANCELLED/timeout" {
		t.Errorf("order %s, want CANCELLED/timeout", got)
	}
}

// TestTimeoutBeforeTheReservation: inventory is down while the deadline
// passes, so the order is cancelled while PENDING; when inventory comes
// back, whatever it reserves for the late order.created it releases, and
// nothing is charged for good.
func TestTimeoutBeforeTheReservation(t *testing.T) {
	t.Parallel()
	w := deadlineWorld(t, nil)
	w.stop("inventory")
	id := w.place("c1", item{"sku-a", 4, 250})
	w.waitScalar("order", "CANCELLED/timeout", `SELECT status || '/' || reason FROM orders.orders WHERE order_id = $1`, id)
	w.start("inventory")
	testenv.WaitFor(t, 60*time.Second, "reservation settled", func() bool {
		s := w.scalar(`SELECT coalesce((SELECT status FROM inventory.reservations WHERE order_id = $1), '')`, id)
		return s == "RELEASED" || s == "CANCELLED"
	})
	w.waitTerminal(id)
	w.checkInvariants()
	if got := w.stock("sku-a"); got != "100/100/0/0" {
		t.Errorf("stock %s, want 100/100/0/0", got)
	}
}

// placeTimedOutAfterCharge places one order whose deadline passes after its
// charge (the order service restarted with a short deadline and slowed down
// for it, then restarted as it was), and waits until it is CANCELLED(timeout)
// and refunded: a saga that holds every event type the others do not.
func (w *world) placeTimedOutAfterCharge(customer string, items ...item) string {
	w.t.Helper()
	saved, savedFaults := w.opts.sagaDeadline, w.opts.faultsFor
	slow := w.opts.faults
	slow.Delay = 1500 * time.Millisecond
	w.stop("order")
	w.opts.sagaDeadline, w.opts.faultsFor = testDeadline, map[string]fault.Config{"order": slow}
	w.start("order")
	id := w.place(customer, items...)
	w.waitTerminal(id)
	w.waitScalar("payment", "REFUNDED", `SELECT status FROM payment.payments WHERE order_id = $1`, id)
	if got := w.orderStatus(id); got != "CANCELLED/timeout" {
		w.t.Fatalf("order %s, want CANCELLED/timeout", got)
	}
	w.stop("order")
	w.opts.sagaDeadline, w.opts.faultsFor = saved, savedFaults
	w.start("order")
	return id
}
