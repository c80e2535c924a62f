package order

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
)

// HandleCreated is the handler of the order-orders consumer: the order
// service reads back its own order.created events and checks each against
// what it wrote. Every order it places is committed, with its order.created
// in the outbox, before the event is published, so:
//
//   - an order.created of an order it has, with that order's customer,
//     items and total, is its own: nothing to do (the hot path: one read of
//     the batch's orders);
//   - one of an order it has that says something else is a forgery (an
//     old-dated copy, another body) or a bug: dead-lettered with the
//     difference;
//   - one of an order it never placed is a forgery (or a bug) that
//     inventory and payment may already act on: the order is recorded as
//     CANCELLED with reason unknown_order (its customer, items and total as
//     the event says, so that the read model's view agrees), and an
//     order.cancelled caused by the event makes inventory release what it
//     held and payment charge nothing (or refund).
//
// It is a consume.BatchHandler and a consume.Handler (a batch of one).
func (s *Service) HandleCreated(ctx context.Context, tx pgx.Tx, events []event.Event) error {
	ids := make([]string, 0, len(events))
	created := make([]event.OrderCreatedPayload, len(events))
	for i, e := range events {
		if e.Type != event.OrderCreated {
			return consume.Permanent(fmt.Errorf("%w: %s on order-orders", ErrUnhandledEvent, e.Type))
		}
		p, err := event.Decode[event.OrderCreatedPayload](e)
		if err != nil {
			return consume.Permanent(fmt.Errorf("decode %s: %w", e.Type, err))
		}
		created[i] = p
		ids = append(ids, e.OrderID)
	}
	orders, err := lockOrders(ctx, tx, ids)
	if err != nil {
		return err
	}
	now := s.now()
	for i, e := range events {
		p := created[i]
		if o, ok := orders[p.OrderID]; ok {
			if o.CustomerID != p.CustomerID || o.TotalCents != p.TotalCents || !sameLines(o.Items, p.Items, true) {
				return consume.Permanent(fmt.Errorf("%w: order.created %s of order %s says customer %.64q, %d cents for %s; the order placed is customer %q, %d cents for %s",
					ErrDisagrees, e.ID, o.ID, p.CustomerID, p.TotalCents, itemsString(p.Items, true), o.CustomerID, o.TotalCents, itemsString(o.Items, true)))
			}
			continue
		}
		// Never placed here: record it cancelled, once.
		o := Order{
			ID: p.OrderID, CustomerID: p.CustomerID, Items: p.Items, TotalCents: p.TotalCents,
			Status: Cancelled, Reason: event.ReasonUnknownOrder, Version: 1,
			CreatedAt: now.UTC(), UpdatedAt: now.UTC(), CreatedEventID: e.ID,
		}
		if _, err := insertOrder(ctx, tx, o, "", ""); err != nil {
			return err
		}
		orders[o.ID] = o
		out, err := event.New(event.OrderCancelled, o.ID, e.ID,
			event.OrderCancelledPayload{OrderID: o.ID, Reason: event.ReasonUnknownOrder}, now)
		if err != nil {
			return consume.Permanent(fmt.Errorf("build %s for order %s: %w", event.OrderCancelled, o.ID, err))
		}
		if err := outbox.Add(ctx, tx, out); err != nil {
			return err
		}
		s.unknown.Inc()
		s.log.Warn("order.created of an order this service never placed: cancelled", zap.String("order_id", o.ID),
			zap.String("event_id", e.ID), zap.String("event_type", string(e.Type)),
			zap.String("customer_id", o.CustomerID), zap.Int64("total_cents", o.TotalCents))
	}
	return nil
}

// handleCreated is HandleCreated for one event (consume.Handler).
func (s *Service) handleCreated(ctx context.Context, tx pgx.Tx, e event.Event) error {
	return s.HandleCreated(ctx, tx, []event.Event{e})
}
