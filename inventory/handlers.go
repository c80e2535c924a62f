package inventory

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
)

// handle is the consume.Handler of both of the service's consumers. It runs
// inside the inbox transaction. Event types the service does not react to are
// no-ops.
func (s *Service) handle(ctx context.Context, tx pgx.Tx, e event.Event) error {
	switch e.Type {
	case event.OrderCreated:
		return s.reserve(ctx, tx, e)
	case event.PaymentFailed:
		return s.release(ctx, tx, e)
	case event.OrderConfirmed:
		return s.commit(ctx, tx, e)
	case event.OrderCancelled:
		return s.cancel(ctx, tx, e)
	}
	s.log.Debug("event type not handled", zap.String("event_type", string(e.Type)),
		zap.String("order_id", e.OrderID), zap.String("event_id", e.ID))
	return nil
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

// reserve decides the order's reservation, all or nothing: every line held,
// HELD and inventory.reserved; or nothing held, REJECTED and
// inventory.rejected. An order that has a decision already (a duplicate
// order.created, whatever its event id) is a no-op.
func (s *Service) reserve(ctx context.Context, tx pgx.Tx, e event.Event) error {
	p, err := event.Decode[event.OrderCreatedPayload](e)
	if err != nil {
		return fmt.Errorf("reserve order %s: %w", e.OrderID, err)
	}
	log := s.log.With(zap.String("order_id", e.OrderID), zap.String("event_id", e.ID))
	fresh, err := insertReservation(ctx, tx, p.OrderID)
	if err != nil {
		return fmt.Errorf("reserve order %s: %w", p.OrderID, err)
	}
	if !fresh {
		log.Debug("order already has a reservation decision")
		return nil
	}

	lines := Lines(p.Items)
	short, reason, err := holdAll(ctx, tx, lines)
	if err != nil {
		return fmt.Errorf("reserve order %s: %w", p.OrderID, err)
	}
	if reason != "" {
		if err := rejectReservation(ctx, tx, p.OrderID, reason); err != nil {
			return fmt.Errorf("reserve order %s: %w", p.OrderID, err)
		}
		out, err := event.New(event.InventoryRejected, p.OrderID, e.ID,
			event.InventoryRejectedPayload{OrderID: p.OrderID, Reason: reason, SKU: short}, s.now())
		if err != nil {
			return consume.Permanent(fmt.Errorf("reserve order %s: %w", p.OrderID, err))
		}
		if err := outbox.Add(ctx, tx, out); err != nil {
			return fmt.Errorf("reserve order %s: %w", p.OrderID, err)
		}
		s.metrics.reservations.WithLabelValues("rejected").Inc()
		log.Info("reservation rejected", zap.String("reason", reason), zap.String("sku", short))
		return nil
	}

	if err := insertLines(ctx, tx, p.OrderID, lines); err != nil {
		return fmt.Errorf("reserve order %s: %w", p.OrderID, err)
	}
	out, err := event.New(event.InventoryReserved, p.OrderID, e.ID,
		event.InventoryReservedPayload{OrderID: p.OrderID, Items: p.Items, TotalCents: Total(p.Items)}, s.now())
	if err != nil {
		return consume.Permanent(fmt.Errorf("reserve order %s: %w", p.OrderID, err))
	}
	if err := outbox.Add(ctx, tx, out); err != nil {
		return fmt.Errorf("reserve order %s: %w", p.OrderID, err)
	}
	s.metrics.reservations.WithLabelValues("held").Inc()
	log.Debug("reservation held", zap.Int("skus", len(lines)))
	return nil
}

// holdAll holds every line or none, in one statement. If one cannot be held
// it returns the first such line's SKU (in the given, SKU order) and the
// reason, and nothing is held.
func holdAll(ctx context.Context, tx pgx.Tx, lines []Line) (sku, reason string, err error) {
	held, err := holdLines(ctx, tx, lines)
	if err != nil || held {
		return "", "", err
	}
	sku, known, err := firstShort(ctx, tx, lines)
	if err != nil {
		return "", "", err
	}
	return sku, RejectReason(known), nil
}

// release gives a HELD reservation's stock back after payment.failed and
// publishes inventory.released. Any other reservation state, or none, is a
// no-op: released already, committed, rejected or unknown.
func (s *Service) release(ctx context.Context, tx pgx.Tx, e event.Event) error {
	p, err := event.Decode[event.PaymentFailedPayload](e)
	if err != nil {
		return fmt.Errorf("release order %s: %w", e.OrderID, err)
	}
	return s.releaseHeld(ctx, tx, e, zap.String("payment_reason", p.Reason))
}

// cancel handles order.cancelled: a HELD reservation is released (the order
// timed out while its stock was held) and inventory.released published; an
// order with no reservation decision yet gets a CANCELLED one, so that its
// late order.created reserves nothing. Any other state is a no-op: the
// order.cancelled that follows a rejection or a release.
func (s *Service) cancel(ctx context.Context, tx pgx.Tx, e event.Event) error {
	p, err := event.Decode[event.OrderCancelledPayload](e)
	if err != nil {
		return fmt.Errorf("cancel order %s: %w", e.OrderID, err)
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO reservations (order_id, status, reason) VALUES ($1, $2, $3)
		ON CONFLICT (order_id) DO NOTHING`, p.OrderID, string(Cancelled), p.Reason)
	if err != nil {
		return fmt.Errorf("cancel order %s: %w", p.OrderID, err)
	}
	if tag.RowsAffected() == 1 {
		s.metrics.reservations.WithLabelValues("cancelled").Inc()
		s.log.Info("order cancelled before its reservation; none will be made", zap.String("order_id", p.OrderID),
			zap.String("event_id", e.ID), zap.String("event_type", string(e.Type)), zap.String("reason", p.Reason))
		return nil
	}
	return s.releaseHeld(ctx, tx, e, zap.String("order_reason", p.Reason))
}

// releaseHeld gives a HELD reservation's stock back and publishes
// inventory.released, caused by e. Any other reservation state, or none, is
// a no-op.
func (s *Service) releaseHeld(ctx context.Context, tx pgx.Tx, e event.Event, why zap.Field) error {
	lines, moved, err := s.leave(ctx, tx, e.OrderID, Release)
	if err != nil || !moved {
		return err
	}
	items := make([]event.Item, len(lines))
	for i, l := range lines {
		items[i] = event.Item{SKU: l.SKU, Qty: l.Qty}
	}
	out, err := event.New(event.InventoryReleased, e.OrderID, e.ID,
		event.InventoryReleasedPayload{OrderID: e.OrderID, Items: items}, s.now())
	if err != nil {
		return consume.Permanent(fmt.Errorf("release order %s: %w", e.OrderID, err))
	}
	if err := outbox.Add(ctx, tx, out); err != nil {
		return fmt.Errorf("release order %s: %w", e.OrderID, err)
	}
	s.metrics.reservations.WithLabelValues("released").Inc()
	s.log.Info("reservation released", zap.String("order_id", e.OrderID), zap.String("event_id", e.ID),
		zap.String("event_type", string(e.Type)), why)
	return nil
}

// commit makes a HELD reservation's stock sold after order.confirmed. It
// publishes nothing. Any other reservation state, or none, is a no-op.
func (s *Service) commit(ctx context.Context, tx pgx.Tx, e event.Event) error {
	p, err := event.Decode[event.OrderConfirmedPayload](e)
	if err != nil {
		return fmt.Errorf("commit order %s: %w", e.OrderID, err)
	}
	_, moved, err := s.leave(ctx, tx, p.OrderID, Commit)
	if err != nil || !moved {
		return err
	}
	s.metrics.reservations.WithLabelValues("committed").Inc()
	s.log.Debug("reservation committed", zap.String("order_id", p.OrderID), zap.String("event_id", e.ID))
	return nil
}

// leave applies transition t to the order's reservation if it is HELD: the
// status moves to t.To() and each line's stock moves with it. moved is
// false, and nothing changes, when the reservation was not HELD.
func (s *Service) leave(ctx context.Context, tx pgx.Tx, orderID string, t Transition) (lines []Line, moved bool, err error) {
	to := t.To()
	moved, err = leaveHeld(ctx, tx, orderID, to)
	if err != nil {
		return nil, false, fmt.Errorf("%s order %s: %w", to, orderID, err)
	}
	if !moved {
		s.log.Debug("no HELD reservation; nothing to do", zap.String("order_id", orderID), zap.String("to", string(to)))
		return nil, false, nil
	}
	lines, err = reservationLines(ctx, tx, orderID)
	if err != nil {
		return nil, false, fmt.Errorf("%s order %s: %w", to, orderID, err)
	}
	if len(lines) == 0 {
		// A HELD reservation always has lines: the data is broken, and
		// retrying cannot mend it.
		return nil, false, consume.Permanent(fmt.Errorf("%s order %s: HELD reservation without items", to, orderID))
	}
	for _, l := range lines { // sorted by SKU, like reserve's locks
		if err := moveStock(ctx, tx, t, l); err != nil {
			return nil, false, fmt.Errorf("%s order %s: %w", to, orderID, err)
		}
	}
	return lines, true, nil
}
