package inventory

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/jetsaga/jetsaga/internal/event"
)

// handle is the consume.Handler of both of the service's consumers: the
// batch handler on a batch of one, so that one event alone is decided and
// checked by the very same rules. It runs inside the inbox transaction.
// Event types the service does not react to are no-ops.
func (s *Service) handle(ctx context.Context, tx pgx.Tx, e event.Event) error {
	return s.handleBatch(ctx, tx, []event.Event{e})
}

// prepare locks, in SKU order, every stock row the batch's events may move:
// the SKUs of each order.created, and those held for each order.confirmed or
// payment.failed. Stock rows are shared by many orders; locking them up front
// in one order means two batches (of this or the other consumer) wait for
// each other at worst, never in a cycle.
func (s *Service) prepare(ctx context.Context, tx pgx.Tx, events []event.Event) error {
	var skus, orders []string
	for _, e := range events {
		switch e.Type {
		case event.OrderCreated:
			p, err := event.Decode[event.OrderCreatedPayload](e)
			if err != nil {
				continue // the handler dead-letters it
			}
			for _, it := range p.Items {
				skus = append(skus, it.SKU)
			}
		case event.OrderConfirmed, event.PaymentFailed, event.OrderCancelled:
			orders = append(orders, e.OrderID)
		}
	}
	if len(skus) == 0 && len(orders) == 0 {
		return nil
	}
	if err := lockStock(ctx, tx, skus, orders); err != nil {
		return fmt.Errorf("lock stock of %d events: %w", len(events), err)
	}
	return nil
}
