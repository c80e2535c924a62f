package payment

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
)

// handle is the consume.Handler of the payment-inventory consumer. It runs
// inside the inbox transaction. Event types other than inventory.reserved are
// no-ops.
func (s *Service) handle(ctx context.Context, tx pgx.Tx, e event.Event) error {
	if e.Type != event.InventoryReserved {
		s.log.Debug("event type not handled", zap.String("event_type", string(e.Type)),
			zap.String("order_id", e.OrderID), zap.String("event_id", e.ID))
		return nil
	}
	return s.charge(ctx, tx, e)
}

// charge charges the reserved order's total through the gateway, once per
// order: the payment row is inserted with ON CONFLICT (order_id) DO NOTHING,
// and only an inserted row publishes payment.completed or payment.failed. A
// repeated inventory.reserved, whatever its event id, is a no-op; the
// gateway's decision is deterministic per order anyway.
func (s *Service) charge(ctx context.Context, tx pgx.Tx, e event.Event) error {
	p, err := event.Decode[event.InventoryReservedPayload](e)
	if err != nil {
		return fmt.Errorf("charge order %s: %w", e.OrderID, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("charge order %s: payment id: %w", p.OrderID, err)
	}
	d := s.gateway.Charge(p.OrderID, p.TotalCents)
	pay := Payment{
		OrderID:     p.OrderID,
		PaymentID:   id.String(),
		AmountCents: p.TotalCents,
		Status:      d.Status,
		Reason:      d.Reason,
	}
	log := s.log.With(zap.String("order_id", p.OrderID), zap.String("event_id", e.ID))
	inserted, err := insertPayment(ctx, tx, pay)
	if err != nil {
		return fmt.Errorf("charge order %s: %w", p.OrderID, err)
	}
	if !inserted {
		log.Debug("order has a payment already")
		return nil
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
		return consume.Permanent(fmt.Errorf("charge order %s: %w", p.OrderID, err))
	}
	if err := outbox.Add(ctx, tx, out); err != nil {
		return fmt.Errorf("charge order %s: %w", p.OrderID, err)
	}
	s.metrics.payments.WithLabelValues(metricStatus(d.Status)).Inc()
	log.Info("payment decided", zap.String("status", string(d.Status)), zap.String("reason", d.Reason),
		zap.Int64("amount_cents", pay.AmountCents), zap.String("payment_id", pay.PaymentID))
	return nil
}
