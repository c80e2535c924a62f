package order

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
)

// Handle applies an inventory or payment event to its order inside tx (the
// consumer loop's inbox transaction): it locks the order's row, lets Apply
// decide, writes the new state and adds the resulting order.confirmed or
// order.cancelled to the outbox, caused by e.
//
// A duplicate, a late event or a re-emitted one with a new id is a no-op and
// returns nil. An unknown order, an undecodable payload or an event type the
// service does not consume can never succeed: they return a consume.Permanent
// error, so the message is dead-lettered instead of retried.
func (s *Service) Handle(ctx context.Context, tx pgx.Tx, e event.Event) error {
	var reason string
	switch e.Type {
	case event.InventoryRejected:
		p, err := event.Decode[event.InventoryRejectedPayload](e)
		if err != nil {
			return consume.Permanent(fmt.Errorf("decode %s: %w", e.Type, err))
		}
		reason = p.Reason
	case event.InventoryReserved, event.PaymentCompleted, event.PaymentFailed, event.InventoryReleased:
	default:
		return consume.Permanent(fmt.Errorf("%w: %s", ErrUnhandledEvent, e.Type))
	}

	o, err := lockOrder(ctx, tx, e.OrderID)
	if errors.Is(err, ErrNotFound) {
		return consume.Permanent(err)
	}
	if err != nil {
		return err
	}
	now := s.now()
	tr, err := o.Apply(e.Type, reason, now)
	if err != nil {
		return consume.Permanent(fmt.Errorf("apply %s to order %s: %w", e.Type, o.ID, err))
	}
	log := s.log.With(zap.String("order_id", o.ID), zap.String("event_id", e.ID), zap.String("event_type", string(e.Type)))
	if !tr.Changed {
		log.Debug("event changes nothing", zap.String("status", string(o.Status)))
		return nil
	}
	if err := updateOrder(ctx, tx, o.Version, tr.Order); err != nil {
		return err
	}
	if tr.Emit != nil {
		out, err := event.New(tr.Emit.EventType(), o.ID, e.ID, tr.Emit, now)
		if err != nil {
			return consume.Permanent(fmt.Errorf("build %s for order %s: %w", tr.Emit.EventType(), o.ID, err))
		}
		if err := outbox.Add(ctx, tx, out); err != nil {
			return err
		}
	}
	log.Debug("order updated", zap.String("from", string(o.Status)), zap.String("to", string(tr.Order.Status)),
		zap.Bool("payment_failed", tr.Order.PaymentFailed), zap.Int("version", tr.Order.Version))
	return nil
}
