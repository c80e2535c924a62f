package payment

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
)

// handle is the consume.Handler of the payment-inventory consumer: the
// batch handler on a batch of one, so that one event alone is charged and
// checked by the very same rules. It runs inside the inbox transaction.
func (s *Service) handle(ctx context.Context, tx pgx.Tx, e event.Event) error {
	return s.handleBatch(ctx, tx, []event.Event{e})
}

// decide asks the gateway about the order e reserved and returns the payment
// and the event that would record it, caused by e.
func (s *Service) decide(e event.Event) (Payment, event.Event, error) {
	p, err := event.Decode[event.InventoryReservedPayload](e)
	if err != nil {
		return Payment{}, event.Event{}, fmt.Errorf("charge order %s: %w", e.OrderID, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Payment{}, event.Event{}, fmt.Errorf("charge order %s: payment id: %w", p.OrderID, err)
	}
	d := s.gateway.Charge(p.OrderID, p.TotalCents)
	pay := Payment{
		OrderID:     p.OrderID,
		PaymentID:   id.String(),
		AmountCents: p.TotalCents,
		Status:      d.Status,
		Reason:      d.Reason,
	}
	var out event.Event
	switch d.Status {
	case Completed:
		out, err = event.New(event.PaymentCompleted, p.OrderID, e.ID, event.PaymentCompletedPayload{
			OrderID: p.OrderID, PaymentID: pay.PaymentID, AmountCents: pay.AmountCents,
		}, s.now())
	default:
		out, err = event.New(event.PaymentFailed, p.OrderID, e.ID, event.PaymentFailedPayload{
			OrderID: p.OrderID, Reason: pay.Reason, AmountCents: pay.AmountCents,
		}, s.now())
	}
	if err != nil {
		return Payment{}, event.Event{}, consume.Permanent(fmt.Errorf("charge order %s: %w", p.OrderID, err))
	}
	return pay, out, nil
}

// decided counts and logs a payment that was recorded.
func (s *Service) decided(pay Payment) {
	s.metrics.payments.WithLabelValues(metricStatus(pay.Status)).Inc()
	s.log.Info("payment decided", zap.String("order_id", pay.OrderID), zap.String("status", string(pay.Status)),
		zap.String("reason", pay.Reason), zap.Int64("amount_cents", pay.AmountCents), zap.String("payment_id", pay.PaymentID))
}

// handleBatch charges the orders that inventory.reserved events reserved
// (consume.BatchHandler), once per order: one statement records the
// payments of the orders that have none yet and, for exactly those, adds
// the payment events to the outbox. An order's first inventory.reserved in
// the batch decides; a later one asking for the same amount, like one
// arriving after the payment, is a no-op. A later one asking for another
// amount refuses the batch: one of the two disagrees with the order, and
// handled one by one each is judged alone (a forged one is dead-lettered
// rather than passed over). Event types other than inventory.reserved are
// no-ops.
//
// Payment charges only the total of the order as order.created told it (the
// payment-orders consumer records it): an inventory.reserved that asks for
// another amount is dead-lettered, one of an order whose order.created it
// has not seen yet is retried. The check is part of the same statement.
func (s *Service) handleBatch(ctx context.Context, tx pgx.Tx, events []event.Event) error {
	var (
		pays  []Payment
		outs  []event.Event
		asked = make(map[string]int64, len(events)) // order id -> what its first inventory.reserved asks
	)
	for _, e := range events {
		if e.Type != event.InventoryReserved {
			continue
		}
		if amount, ok := asked[e.OrderID]; ok {
			p, err := event.Decode[event.InventoryReservedPayload](e)
			if err != nil {
				return fmt.Errorf("charge order %s: %w", e.OrderID, err)
			}
			if p.TotalCents != amount {
				return fmt.Errorf("charge order %s: two inventory.reserved in one batch ask for %d and %d cents; each is judged alone",
					e.OrderID, amount, p.TotalCents)
			}
			continue
		}
		pay, out, err := s.decide(e)
		if err != nil {
			return err
		}
		asked[pay.OrderID] = pay.AmountCents
		pays, outs = append(pays, pay), append(outs, out)
	}
	if len(pays) == 0 {
		return nil
	}
	inserted, err := insertPaymentsWithEvents(ctx, tx, pays, outs)
	if err != nil {
		return fmt.Errorf("charge %d orders: %w", len(pays), err)
	}
	for _, pay := range pays {
		if inserted[pay.OrderID] {
			s.decided(pay)
		}
	}
	return nil
}
