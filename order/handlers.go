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
	reason, err := eventReason(e)
	if err != nil {
		return err
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

// eventReason checks that the service consumes e's type and returns the
// reason an inventory.rejected carries ("" for the other types). An event it
// can never apply gets a consume.Permanent error.
func eventReason(e event.Event) (string, error) {
	switch e.Type {
	case event.InventoryRejected:
		p, err := event.Decode[event.InventoryRejectedPayload](e)
		if err != nil {
			return "", consume.Permanent(fmt.Errorf("decode %s: %w", e.Type, err))
		}
		return p.Reason, nil
	case event.InventoryReserved, event.PaymentCompleted, event.PaymentFailed, event.InventoryReleased,
		event.PaymentRefunded:
		return "", nil
	default:
		return "", consume.Permanent(fmt.Errorf("%w: %s", ErrUnhandledEvent, e.Type))
	}
}

// HandleBatch is Handle for several events at once (consume.BatchHandler):
// it locks their orders in one statement (in order id order), applies the
// events in the order given (one order's events one after the other, on its
// state so far), then writes every changed order in one statement and every
// resulting event in another. Any event Handle would refuse fails the whole
// batch, which the loop then hands to Handle one event at a time.
func (s *Service) HandleBatch(ctx context.Context, tx pgx.Tx, events []event.Event) error {
	ids := make([]string, 0, len(events))
	for _, e := range events {
		ids = append(ids, e.OrderID)
	}
	orders, err := lockOrders(ctx, tx, ids)
	if err != nil {
		return err
	}
	now := s.now()
	loaded := make(map[string]int, len(orders)) // version as locked
	for id, o := range orders {
		loaded[id] = o.Version
	}
	var (
		changed []string
		out     []event.Event
	)
	for _, e := range events {
		reason, err := eventReason(e)
		if err != nil {
			return err
		}
		o, ok := orders[e.OrderID]
		if !ok {
			return consume.Permanent(fmt.Errorf("lock order %s: %w", e.OrderID, ErrNotFound))
		}
		tr, err := o.Apply(e.Type, reason, now)
		if err != nil {
			return consume.Permanent(fmt.Errorf("apply %s to order %s: %w", e.Type, o.ID, err))
		}
		if !tr.Changed {
			continue
		}
		if tr.Order.Version == loaded[o.ID]+1 {
			changed = append(changed, o.ID)
		}
		orders[o.ID] = tr.Order
		if tr.Emit != nil {
			ev, err := event.New(tr.Emit.EventType(), o.ID, e.ID, tr.Emit, now)
			if err != nil {
				return consume.Permanent(fmt.Errorf("build %s for order %s: %w", tr.Emit.EventType(), o.ID, err))
			}
			out = append(out, ev)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	updated := make([]Order, len(changed))
	for i, id := range changed {
		updated[i] = orders[id]
	}
	if err := updateOrders(ctx, tx, loaded, updated); err != nil {
		return err
	}
	if err := outbox.Add(ctx, tx, out...); err != nil {
		return err
	}
	if ce := s.log.Check(zap.DebugLevel, "orders updated"); ce != nil {
		ce.Write(zap.Int("events", len(events)), zap.Int("orders", len(changed)), zap.Int("emitted", len(out)))
	}
	return nil
}
