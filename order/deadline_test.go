package order

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

func TestExpire(t *testing.T) {
	t.Parallel()
	deadline := clockBase.Add(30 * time.Second)
	tests := []struct {
		name     string
		status   Status
		deadline time.Time
		at       time.Time
		want     bool
	}{
		{"pending past its deadline", Pending, deadline, deadline.Add(time.Millisecond), true},
		{"reserved past its deadline", Reserved, deadline, deadline.Add(time.Hour), true},
		{"pending at its deadline", Pending, deadline, deadline, true},
		{"pending before its deadline", Pending, deadline, deadline.Add(-time.Millisecond), false},
		{"no deadline", Reserved, time.Time{}, deadline.Add(time.Hour), false},
		{"confirmed past its deadline", Confirmed, deadline, deadline.Add(time.Hour), false},
		{"cancelled past its deadline", Cancelled, deadline, deadline.Add(time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Order{ID: "o1", Status: tt.status, Version: 2, Deadline: tt.deadline}
			tr := o.Expire(tt.at)
			if tr.Changed != tt.want {
				t.Fatalf("Changed = %t, want %t", tr.Changed, tt.want)
			}
			if !tt.want {
				if tr.Emit != nil || tr.Order.Status != tt.status || tr.Order.Version != 2 {
					t.Errorf("no-op changed the order: %+v, emit %v", tr.Order, tr.Emit)
				}
				return
			}
			if tr.Order.Status != Cancelled || tr.Order.Reason != event.ReasonTimeout || tr.Order.Version != 3 ||
				!tr.Order.UpdatedAt.Equal(tt.at) {
				t.Errorf("order %+v, want CANCELLED(timeout) at version 3, updated at %v", tr.Order, tt.at)
			}
			if tr.Emit != (event.OrderCancelledPayload{OrderID: "o1", Reason: event.ReasonTimeout}) {
				t.Errorf("emit %#v, want order.cancelled(timeout)", tr.Emit)
			}
		})
	}
}

// TestApplyAfterTimeout: the events that can still arrive after a timeout
// change nothing, so the order stays CANCELLED(timeout).
func TestApplyAfterTimeout(t *testing.T) {
	t.Parallel()
	o := Order{ID: "o1", Status: Reserved, Version: 2, Deadline: clockBase}
	o = o.Expire(clockBase).Order
	for _, typ := range []event.Type{event.InventoryReserved, event.PaymentCompleted, event.PaymentFailed,
		event.InventoryReleased, event.PaymentRefunded} {
		tr, err := o.Apply(typ, "", clockBase.Add(time.Second))
		if err != nil || tr.Changed || tr.Emit != nil {
			t.Errorf("%s after the timeout: changed %t, emit %v, err %v", typ, tr.Changed, tr.Emit, err)
		}
	}
}

// clock is a test clock the deadline tests move by hand.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

func newClock(at time.Time) *clock {
	c := &clock{}
	c.ns.Store(at.UnixNano())
	return c
}

func (b bundle) timedOut() float64 { return testutil.ToFloat64(b.svc.timeouts) }

// setupDeadline is setup with --saga-deadline d on a clock of the test's,
// sharing pool when one is given (a second order instance).
func setupDeadline(t *testing.T, d time.Duration, c *clock, b0 *bundle) bundle {
	t.Helper()
	var b bundle
	if b0 == nil {
		b = setup(t)
	} else {
		b = bundle{pool: b0.pool, handed: &sync.Map{}, notified: &atomic.Int64{}}
	}
	handed := b.handed
	svc, err := NewService(&service.Runtime{
		Pool: b.pool, Log: zaptest.NewLogger(t), Registry: prometheus.NewRegistry(), Now: c.now,
		Hand: func(rows []outbox.Row) {
			for _, r := range rows {
				handed.Store(r.Event.ID, r.Seq)
			}
		},
	}, Config{SagaDeadline: d})
	if err != nil {
		t.Fatal(err)
	}
	b.svc = svc
	return b
}

// TestExpireDue: a pass cancels exactly the open orders past their deadline,
// each once, with an order.cancelled(timeout) caused by its order.created,
// handed to the relay; an order an event finished first is left alone.
func TestExpireDue(t *testing.T) {
	t.Parallel()
	c := newClock(clockBase)
	b := setupDeadline(t, 30*time.Second, c, nil)
	pending, reserved, confirmed := placeOrder(t, b), placeOrder(t, b), placeOrder(t, b)
	c.add(10 * time.Second)
	late := placeOrder(t, b) // its deadline is 10s after the others'
	mustDeliver(t, b, newEvent(t, event.InventoryReserved, reserved.ID, ""))
	mustDeliver(t, b, newEvent(t, event.InventoryReserved, confirmed.ID, ""))
	mustDeliver(t, b, newEvent(t, event.PaymentCompleted, confirmed.ID, ""))

	if got := loadOrder(t, b, pending.ID).Deadline; !got.Equal(clockBase.Add(30 * time.Second)) {
		t.Fatalf("deadline %v, want placed + 30s = %v", got, clockBase.Add(30*time.Second))
	}
	c.add(19 * time.Second) // 29s after the first three
	if n, err := b.svc.ExpireDue(t.Context()); err != nil || n != 0 {
		t.Fatalf("before any deadline: ExpireDue = %d, %v; want 0", n, err)
	}
	c.add(time.Second) // the first three's deadline
	n, err := b.svc.ExpireDue(t.Context())
	if err != nil || n != 2 {
		t.Fatalf("ExpireDue = %d, %v; want 2 (pending and reserved)", n, err)
	}
	for _, id := range []string{pending.ID, reserved.ID} {
		o := loadOrder(t, b, id)
		if o.Status != Cancelled || o.Reason != event.ReasonTimeout {
			t.Errorf("order %s: %s %q, want CANCELLED timeout", id, o.Status, o.Reason)
		}
		rows := outboxOf(t, b, id)
		if len(rows) != 2 || rows[1].Type != event.OrderCancelled {
			t.Fatalf("outbox of %s: %v, want order.created, order.cancelled", id, outboxTypes(rows))
		}
		var body event.OrderCancelledPayload
		if err := json.Unmarshal(rows[1].Body, &body); err != nil || body.Reason != event.ReasonTimeout {
			t.Errorf("order.cancelled body %s, want reason timeout", rows[1].Body)
		}
		if o.CreatedEventID == "" || rows[1].CausationID != o.CreatedEventID {
			t.Errorf("order.cancelled caused by %q, want the order.created %q", rows[1].CausationID, o.CreatedEventID)
		}
	}
	if got := loadOrder(t, b, confirmed.ID); got.Status != Confirmed {
		t.Errorf("confirmed order is %s, want CONFIRMED", got.Status)
	}
	if got := loadOrder(t, b, late.ID); got.Status != Pending {
		t.Errorf("the later order is %s before its deadline, want PENDING", got.Status)
	}
	if got := b.timedOut(); got != 2 {
		t.Errorf("jetsaga_orders_timed_out_total = %v, want 2", got)
	}
	handed := 0
	b.handed.Range(func(_, _ any) bool { handed++; return true })
	if handed < 2 {
		t.Errorf("%d rows handed to the relay, want the 2 order.cancelled at least", handed)
	}
	if n, err := b.svc.ExpireDue(t.Context()); err != nil || n != 0 {
		t.Errorf("second pass: ExpireDue = %d, %v; want 0", n, err)
	}
	// A late payment.completed changes nothing.
	mustDeliver(t, b, newEvent(t, event.PaymentCompleted, reserved.ID, ""))
	if got := loadOrder(t, b, reserved.ID); got.Status != Cancelled || len(outboxOf(t, b, reserved.ID)) != 2 {
		t.Errorf("after a late payment.completed: %s, %d outbox rows; want CANCELLED, 2", got.Status, len(outboxOf(t, b, reserved.ID)))
	}
}

// TestExpireDueSkipsLockedOrders: an order whose row a handler holds is
// skipped, not waited for; the handler's outcome then stands.
func TestExpireDueSkipsLockedOrders(t *testing.T) {
	t.Parallel()
	c := newClock(clockBase)
	b := setupDeadline(t, time.Second, c, nil)
	busy, idle := placeOrder(t, b), placeOrder(t, b)
	mustDeliver(t, b, newEvent(t, event.InventoryReserved, busy.ID, ""))
	c.add(2 * time.Second)

	tx, err := b.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(t.Context()) }()
	if err := b.svc.Handle(t.Context(), tx, newEvent(t, event.PaymentCompleted, busy.ID, "")); err != nil {
		t.Fatal(err)
	}
	n, err := b.svc.ExpireDue(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("ExpireDue while %s is locked = %d, %v; want 1", busy.ID, n, err)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := loadOrder(t, b, busy.ID); got.Status != Confirmed {
		t.Errorf("the order the handler held is %s, want CONFIRMED", got.Status)
	}
	if got := loadOrder(t, b, idle.ID); got.Status != Cancelled {
		t.Errorf("the idle order is %s, want CANCELLED", got.Status)
	}
	if n, err := b.svc.ExpireDue(t.Context()); err != nil || n != 0 {
		t.Errorf("next pass = %d, %v; want 0", n, err)
	}
}

// TestExpireDueSeveralInstances: schedulers of several order instances on
// one database cancel each order exactly once between them.
func TestExpireDueSeveralInstances(t *testing.T) {
	t.Parallel()
	c := newClock(clockBase)
	a := setupDeadline(t, time.Second, c, nil)
	const orders = 600 // more than one pass's batch
	for range orders {
		placeOrder(t, a)
	}
	c.add(2 * time.Second)
	instances := []bundle{a, setupDeadline(t, time.Second, c, &a), setupDeadline(t, time.Second, c, &a)}
	var wg sync.WaitGroup
	var total atomic.Int64
	for _, in := range instances {
		wg.Go(func() {
			for {
				n, err := in.svc.ExpireDue(t.Context())
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 {
					return
				}
				total.Add(int64(n))
			}
		})
	}
	wg.Wait()
	if got := total.Load(); got != orders {
		t.Errorf("instances cancelled %d orders between them, want %d", got, orders)
	}
	if got := countRows(t, a, `SELECT count(*) FROM outbox WHERE event_type = 'order.cancelled'`); got != orders {
		t.Errorf("%d order.cancelled in the outbox, want %d", got, orders)
	}
	if got := countRows(t, a, `SELECT count(*) FROM orders WHERE status = 'CANCELLED' AND reason = 'timeout'`); got != orders {
		t.Errorf("%d orders CANCELLED(timeout), want %d", got, orders)
	}
}

// TestSchedulerRuns: Run, as the runtime starts it, cancels an order soon
// after its deadline on the wall clock, and returns when stopped.
func TestSchedulerRuns(t *testing.T) {
	t.Parallel()
	b := setupDeadline(t, 200*time.Millisecond, newClock(time.Now()), nil)
	b.svc.now = func() time.Time { return time.Now().UTC() }
	o := placeOrder(t, b)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- b.svc.Run(ctx) }()
	testenv.WaitFor(t, 10*time.Second, "order cancelled by its deadline", func() bool {
		return loadOrder(t, b, o.ID).Status == Cancelled
	})
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}
