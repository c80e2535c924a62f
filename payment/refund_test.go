package payment

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/jetsaga/jetsaga/internal/event"
)

// cancelled builds order.cancelled for orderID with reason, with a new id.
func cancelled(t *testing.T, orderID, reason string) event.Event {
	t.Helper()
	e, err := event.New(event.OrderCancelled, orderID, uuid.Must(uuid.NewV7()).String(),
		event.OrderCancelledPayload{OrderID: orderID, Reason: reason}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// applyCancelled runs the payment-orders handler on events, one batch in
// one transaction (batch true) or one transaction per event.
func (b bundle) applyCancelled(t *testing.T, batch bool, events ...event.Event) {
	t.Helper()
	ctx := context.Background()
	run := func(evs []event.Event) {
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if batch {
			err = b.svc.handleCancelledBatch(ctx, tx, evs)
		} else {
			err = b.svc.handleCancelled(ctx, tx, evs[0])
		}
		if err != nil {
			t.Fatalf("handle order.cancelled: %v", err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if batch {
		run(events)
		return
	}
	for _, e := range events {
		run([]event.Event{e})
	}
}

func (b bundle) payment(t *testing.T, orderID string) Payment {
	t.Helper()
	p, err := getPayment(context.Background(), b.pool, orderID)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCancelledOrderHasNoNetCharge drives the races of a timeout against the
// charge: whichever of inventory.reserved and order.cancelled reaches
// payment first, and however often either is redelivered, a cancelled order
// ends with no net charge and payment.refunded is published once, exactly
// when a charge completed.
func TestCancelledOrderHasNoNetCharge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		// cancelFirst: order.cancelled reaches payment before
		// inventory.reserved.
		cancelFirst bool
		wantStatus  Status
		wantRefund  bool
	}{
		{"charge completed, then the timeout: refunded", Config{}, false, Refunded, true},
		{"timeout before the charge: never charged", Config{}, true, Cancelled, false},
		{"charge declined, then the cancellation: nothing to give back", Config{DeclineRate: 1}, false, Failed, false},
	}
	for _, tt := range tests {
		for _, batch := range []bool{false, true} {
			t.Run(tt.name+map[bool]string{false: " (one by one)", true: " (batch)"}[batch], func(t *testing.T) {
				t.Parallel()
				b := setup(t, tt.cfg)
				res, cancel := reserved(t, "o1", 2500), cancelled(t, "o1", event.ReasonTimeout)
				if tt.cancelFirst {
					b.applyCancelled(t, batch, cancel)
					b.apply(t, res)
				} else {
					b.apply(t, res)
					b.applyCancelled(t, batch, cancel)
				}
				// Redeliveries and a re-emitted cancellation change nothing.
				b.apply(t, res)
				b.applyCancelled(t, batch, cancel, cancelled(t, "o1", event.ReasonTimeout))

				p := b.payment(t, "o1")
				if p.Status != tt.wantStatus {
					t.Fatalf("payment status %s, want %s", p.Status, tt.wantStatus)
				}
				if (p.RefundedAt != nil) != tt.wantRefund {
					t.Errorf("refunded_at = %v, want set: %v", p.RefundedAt, tt.wantRefund)
				}
				var refunds []outRow
				for _, o := range b.outbox(t) {
					if o.Type == event.PaymentRefunded {
						refunds = append(refunds, o)
					}
				}
				if !tt.wantRefund {
					if len(refunds) != 0 {
						t.Fatalf("%d payment.refunded, want none", len(refunds))
					}
					return
				}
				if len(refunds) != 1 {
					t.Fatalf("%d payment.refunded, want 1", len(refunds))
				}
				var body event.PaymentRefundedPayload
				if err := json.Unmarshal(refunds[0].Body, &body); err != nil {
					t.Fatal(err)
				}
				if body.PaymentID != p.PaymentID || body.AmountCents != 2500 || body.Reason != event.ReasonTimeout ||
					refunds[0].CausationID != cancel.ID {
					t.Errorf("payment.refunded %+v caused by %s, want payment %s, 2500 cents, timeout, caused by %s",
						body, refunds[0].CausationID, p.PaymentID, cancel.ID)
				}
				if got := counterValue(t, b.reg, "jetsaga_payments_total", "status", "refunded"); got != 1 {
					t.Errorf("jetsaga_payments_total{status=refunded} = %v, want 1", got)
				}
			})
		}
	}
}

// TestCancelBatchOfManyOrders: one batch refunds the charged orders, marks
// the others, and writes one payment.refunded per charged order.
func TestCancelBatchOfManyOrders(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	var evs []event.Event
	for _, id := range []string{"a", "b", "c", "d"} {
		if id == "a" || id == "c" {
			b.apply(t, reserved(t, id, 100))
		}
		evs = append(evs, cancelled(t, id, event.ReasonTimeout))
	}
	b.applyCancelled(t, true, evs...)
	want := map[string]Status{"a": Refunded, "b": Cancelled, "c": Refunded, "d": Cancelled}
	for _, p := range b.payments(t) {
		if want[p.OrderID] != p.Status {
			t.Errorf("order %s: payment %s, want %s", p.OrderID, p.Status, want[p.OrderID])
		}
		delete(want, p.OrderID)
	}
	if len(want) != 0 {
		t.Errorf("orders without a payment row: %v", want)
	}
	var n int
	if err := b.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM outbox WHERE event_type = 'payment.refunded'`).Scan(&n); err != nil && err != pgx.ErrNoRows {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("%d payment.refunded in the outbox, want 2", n)
	}
}
