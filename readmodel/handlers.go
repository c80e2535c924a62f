package readmodel

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
)

// handle projects one event of any type, inside the inbox transaction tx:
// lock the order, record the event (a known event id is a no-op), recompute
// the order's view from all its recorded events with Project, and save it.
// Because the view is a function of the set of events, events arriving late,
// twice or out of causal order converge to the same view.
func (rm *readModel) handle(ctx context.Context, tx pgx.Tx, e event.Event) error {
	if err := e.Validate(); err != nil {
		return consume.Permanent(fmt.Errorf("project %s %s: %w", e.Type, e.ID, err))
	}
	now := rm.now().UTC()
	isNew, recs, err := recordAndLoad(ctx, tx, e, now)
	if err != nil {
		return err
	}
	if !isNew {
		rm.duplicates.Add(1)
		return nil
	}
	v := Project(recs)
	changed, err := saveView(ctx, tx, v, now)
	if err != nil {
		return err
	}

	// Recorded before the commit: a transaction that then fails to commit
	// and is retried counts its event twice, which a lag summary tolerates.
	lag := now.Sub(e.OccurredAt)
	rm.projected.Add(1)
	rm.lags.add(float64(lag) / float64(time.Millisecond))
	rm.lagSeconds.Observe(lag.Seconds())
	if ce := rm.log.Check(zap.DebugLevel, "projected"); ce != nil {
		ce.Write(zap.String("order_id", e.OrderID), zap.String("event_id", e.ID),
			zap.String("event_type", string(e.Type)), zap.String("status", string(v.Status)),
			zap.Int("version", v.Version), zap.Bool("view_changed", changed), zap.Duration("lag", lag))
	}
	return nil
}

// handleBatch projects several events set-based (consume.BatchHandler): it
// locks their orders (in order id order, as the one-by-one path does),
// records the events, reads back every event of those orders, computes each
// order's view with Project and saves the views, in three round trips
// whatever the number of events. Any invalid event fails the batch, which
// the loop then hands to handle one event at a time.
func (rm *readModel) handleBatch(ctx context.Context, tx pgx.Tx, events []event.Event) error {
	for _, e := range events {
		if err := e.Validate(); err != nil {
			return consume.Permanent(fmt.Errorf("project %s %s: %w", e.Type, e.ID, err))
		}
	}
	now := rm.now().UTC()
	fresh, byOrder, err := recordAndLoadAll(ctx, tx, events, now)
	if err != nil {
		return err
	}
	views := make([]View, 0, len(byOrder))
	for _, recs := range byOrder {
		views = append(views, Project(recs))
	}
	if _, err := saveViews(ctx, tx, views, now); err != nil {
		return err
	}
	for _, e := range events {
		if !fresh[e.ID] {
			rm.duplicates.Add(1)
			continue
		}
		lag := now.Sub(e.OccurredAt)
		rm.projected.Add(1)
		rm.lags.add(float64(lag) / float64(time.Millisecond))
		rm.lagSeconds.Observe(lag.Seconds())
	}
	if ce := rm.log.Check(zap.DebugLevel, "projected batch"); ce != nil {
		ce.Write(zap.Int("events", len(events)), zap.Int("orders", len(views)))
	}
	return nil
}
