package payment

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
)

// handleCancelled is the consume.Handler of the payment-orders consumer: it
// applies one order event (see handleCancelledBatch).
func (s *Service) handleCancelled(ctx context.Context, tx pgx.Tx, e event.Event) error {
	return s.handleCancelledBatch(ctx, tx, []event.Event{e})
}

// handleCancelledBatch applies the order events payment-orders takes
// (consume.BatchHandler). order.created and order.confirmed tell payment
// what it checks later events against: the order's total (the only amount
// inventory.reserved may charge) and that it was confirmed (an
// order.cancelled of a confirmed order contradicts it, and is dead-lettered
// rather than refunded). All of it is one round trip (cancelPayments).
//
// A cancelled order must end with no net charge, whichever comes first:
//   - its payment COMPLETED (the timeout landed after the charge, or between
//     payment.completed and the order's confirmation): the charge is given
//     back, the payment becomes REFUNDED and payment.refunded is published;
//   - no payment yet and the order timed out (before inventory.reserved
//     reached payment): a CANCELLED payment is recorded, charging nothing,
//     so that a late inventory.reserved is a no-op. An order cancelled for
//     any other reason was rejected or declined, and no inventory.reserved
//     is still to come: nothing is recorded;
//   - FAILED, REFUNDED or CANCELLED already: nothing to do.
//
// The decision rests on the payments row of the order, one per order ever,
// written under its unique key: a charge and a cancellation of one order
// handled at the same time wait for each other, and the second sees the
// first's outcome.
func (s *Service) handleCancelledBatch(ctx context.Context, tx pgx.Tx, events []event.Event) error {
	var (
		marks  []Payment
		cause  = make(map[string]event.Event, len(events))
		reason = make(map[string]string, len(events))
		learn  learnt
		seen   = make(map[string]bool, len(events)) // order.created, order.confirmed by order
	)
	for _, e := range events {
		switch e.Type {
		case event.OrderCreated:
			p, err := event.Decode[event.OrderCreatedPayload](e)
			if err != nil {
				return consume.Permanent(fmt.Errorf("learn order %s: %w", e.OrderID, err))
			}
			if !seen["c"+p.OrderID] {
				seen["c"+p.OrderID] = true
				learn.created, learn.totals, learn.createdBy = append(learn.created, p.OrderID), append(learn.totals, p.TotalCents), append(learn.createdBy, e.ID)
			}
			continue
		case event.OrderConfirmed:
			p, err := event.Decode[event.OrderConfirmedPayload](e)
			if err != nil {
				return consume.Permanent(fmt.Errorf("learn order %s: %w", e.OrderID, err))
			}
			if !seen["k"+p.OrderID] {
				seen["k"+p.OrderID] = true
				learn.confirmed, learn.confTotal = append(learn.confirmed, p.OrderID), append(learn.confTotal, p.TotalCents)
			}
			continue
		case event.OrderCancelled:
		default:
			continue
		}
		p, err := event.Decode[event.OrderCancelledPayload](e)
		if err != nil {
			return consume.Permanent(fmt.Errorf("cancel payment of order %s: %w", e.OrderID, err))
		}
		if _, seen := cause[p.OrderID]; seen {
			continue
		}
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("cancel payment of order %s: payment id: %w", p.OrderID, err)
		}
		cause[p.OrderID], reason[p.OrderID] = e, p.Reason
		marks = append(marks, Payment{OrderID: p.OrderID, PaymentID: id.String(), Status: Cancelled, Reason: p.Reason})
		if p.Reason != event.ReasonTimeout && p.Reason != event.ReasonUnknownOrder {
			// Rejected or declined: inventory.reserved never comes, or
			// came and failed; only a refund could be due. (An order the
			// order service never placed may still be reserved: like a
			// timeout, it gets a CANCELLED payment.)
			marks[len(marks)-1].Status = ""
		}
	}
	if len(marks) == 0 && len(learn.created) == 0 && len(learn.confirmed) == 0 {
		return nil
	}
	now := s.now().UTC()
	refunded, marked, confirmed, err := cancelPayments(ctx, tx, learn, marks, now)
	if err != nil {
		return err
	}
	if len(confirmed) > 0 {
		errs := make([]error, len(confirmed))
		for i, order := range confirmed {
			errs[i] = consume.Permanent(fmt.Errorf("cancel payment of order %s: %w: order.cancelled %s (%s) of an order payment saw confirmed",
				order, ErrDisagrees, cause[order].ID, reason[order]))
		}
		return errors.Join(errs...)
	}
	out := make([]event.Event, 0, len(refunded))
	for _, pay := range refunded {
		ev, err := event.New(event.PaymentRefunded, pay.OrderID, cause[pay.OrderID].ID, event.PaymentRefundedPayload{
			OrderID: pay.OrderID, PaymentID: pay.PaymentID, AmountCents: pay.AmountCents, Reason: reason[pay.OrderID],
		}, now)
		if err != nil {
			return consume.Permanent(fmt.Errorf("refund order %s: %w", pay.OrderID, err))
		}
		out = append(out, ev)
	}
	if err := outbox.Add(ctx, tx, out...); err != nil {
		return fmt.Errorf("refund %d orders: %w", len(out), err)
	}
	for _, pay := range refunded {
		s.metrics.payments.WithLabelValues(metricStatus(Refunded)).Inc()
		s.log.Info("charge refunded: the order was cancelled", zap.String("order_id", pay.OrderID),
			zap.String("event_id", cause[pay.OrderID].ID), zap.String("event_type", string(event.OrderCancelled)),
			zap.String("payment_id", pay.PaymentID), zap.Int64("amount_cents", pay.AmountCents))
	}
	for order := range marked {
		s.metrics.payments.WithLabelValues(metricStatus(Cancelled)).Inc()
		if ce := s.log.Check(zap.DebugLevel, "order cancelled before it was charged; it never will be"); ce != nil {
			ce.Write(zap.String("order_id", order), zap.String("event_id", cause[order].ID))
		}
	}
	return nil
}
