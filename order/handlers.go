package order

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

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
// Before Apply, the event is checked against the order (Order.Verify): one
// that contradicts it is dead-lettered with the reason; one that comes
// before the step it follows is retried.
//
// A duplicate, a late event or a re-emitted one with a new id is a no-op and
// returns nil. An undecodable payload or an event type the service does not
// consume can never succeed: they return a consume.Permanent error, so the
// message is dead-lettered instead of retried. An unknown order is retried
// for a while, then dead-lettered (unknownOrder).
func (s *Service) Handle(ctx context.Context, tx pgx.Tx, e event.Event) error {
	reason, facts, err := eventFacts(e)
	if err != nil {
		return err
	}
	now := s.now()
	o, err := lockOrder(ctx, tx, e.OrderID)
	if errors.Is(err, ErrNotFound) {
		return unknownOrder(e, now)
	}
	if err != nil {
		return err
	}
	if err := verify(o, e, facts); err != nil {
		return err
	}
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

// unknownGrace is how long after it occurred an event for an order the
// service does not have is retried before it is dead-lettered. Every order
// the service places is committed before its order.created is published, so
// no genuine event names an order it does not have, but one of an
// order.created it never wrote (forged) that its order-orders consumer has
// not cancelled yet (see HandleCreated): that takes milliseconds. A forger
// who backdates the event only gets it dead-lettered sooner.
const unknownGrace = 10 * time.Second

// unknownOrder is the error for an event of an order the service does not
// have: retried while the event is younger than unknownGrace, then
// permanent.
func unknownOrder(e event.Event, now time.Time) error {
	err := fmt.Errorf("%s for order %s: %w", e.Type, e.OrderID, ErrNotFound)
	if now.Sub(e.OccurredAt) < unknownGrace {
		return consume.NotYet(err)
	}
	return consume.Permanent(err)
}

// verify checks e against o (Order.Verify): a contradiction is permanent
// (dead-lettered with the reason), an event too early is retried.
func verify(o Order, e event.Event, f Facts) error {
	err := o.Verify(e.Type, f)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrDisagrees):
		return consume.Permanent(fmt.Errorf("verify %s %s: %w", e.Type, e.ID, err))
	default: // too early
		return consume.NotYet(fmt.Errorf("verify %s %s: %w", e.Type, e.ID, err))
	}
}

// eventFacts checks that the service consumes e's type and returns the
// reason an inventory.rejected carries ("" for the other types) and what
// Verify checks. An event it can never apply gets a consume.Permanent error.
func eventFacts(e event.Event) (string, Facts, error) {
	permanent := func(err error) (string, Facts, error) {
		return "", Facts{}, consume.Permanent(fmt.Errorf("decode %s: %w", e.Type, err))
	}
	switch e.Type {
	case event.InventoryRejected:
		p, err := event.Decode[event.InventoryRejectedPayload](e)
		if err != nil {
			return permanent(err)
		}
		return p.Reason, Facts{}, nil
	case event.InventoryReserved:
		p, err := event.Decode[event.InventoryReservedPayload](e)
		if err != nil {
			return permanent(err)
		}
		return "", Facts{AmountCents: p.TotalCents, Items: p.Items}, nil
	case event.PaymentCompleted:
		p, err := event.Decode[event.PaymentCompletedPayload](e)
		if err != nil {
			return permanent(err)
		}
		return "", Facts{AmountCents: p.AmountCents}, nil
	case event.PaymentFailed:
		p, err := event.Decode[event.PaymentFailedPayload](e)
		if err != nil {
			return permanent(err)
		}
		return "", Facts{AmountCents: p.AmountCents}, nil
	case event.InventoryReleased:
		p, err := event.Decode[event.InventoryReleasedPayload](e)
		if err != nil {
			return permanent(err)
		}
		return "", Facts{Items: p.Items}, nil
	case event.PaymentRefunded:
		return "", Facts{}, nil
	default:
		return "", Facts{}, consume.Permanent(fmt.Errorf("%w: %s", ErrUnhandledEvent, e.Type))
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
		early   consume.Later // events to retry once their step has come
	)
	tooEarly := func(e event.Event, err error) {
		early.IDs = append(early.IDs, e.ID)
		early.Err = cmp.Or(early.Err, err)
	}
	for _, e := range events {
		reason, facts, err := eventFacts(e)
		if err != nil {
			return err
		}
		o, ok := orders[e.OrderID]
		if !ok {
			if err := unknownOrder(e, now); !consume.IsPermanent(err) {
				tooEarly(e, err)
				continue
			}
			return unknownOrder(e, now)
		}
		if err := verify(o, e, facts); err != nil {
			if !consume.IsPermanent(err) {
				tooEarly(e, err)
				continue
			}
			return err
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
	if len(early.IDs) > 0 {
		// Nothing of this pass is kept: the loop runs the batch again
		// without them.
		return &early
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
