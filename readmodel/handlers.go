package readmodel

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/pg"
)

// handle projects one event of any type, inside the inbox transaction tx,
// as handleBatch does a batch of one. Because a view is a function of the
// set of its order's events, events arriving late, twice or out of causal
// order converge to the same view.
func (rm *readModel) handle(ctx context.Context, tx pgx.Tx, e event.Event) error {
	if err := e.Validate(); err != nil {
		return consume.Permanent(fmt.Errorf("project %s %s: %w", e.Type, e.ID, err))
	}
	fresh, v, err := project(ctx, tx, []event.Event{e}, rm.now().UTC(), true)
	if err != nil {
		return err
	}
	rm.count(e, fresh)
	rm.dash.observe([]event.Event{e}, fresh, v)
	if ce := rm.log.Check(zap.DebugLevel, "projected"); ce != nil {
		ce.Write(zap.String("order_id", e.OrderID), zap.String("event_id", e.ID),
			zap.String("event_type", string(e.Type)), zap.Bool("fresh", fresh[e.ID]), zap.Int("views", len(v)))
	}
	return nil
}

// handleBatch projects several events set-based (consume.BatchHandler): it
// locks their orders (in order id order, as the one-by-one path does),
// records the events, reads back every event of those orders (and the views
// of those pruned), computes each order's view with Project (or Fold) and
// saves the views, in two round trips whatever the number of events (one,
// the views going with the COMMIT, under the loop's set-based pass). Any
// invalid event fails the batch, which the loop then hands to handle one
// event at a time.
func (rm *readModel) handleBatch(ctx context.Context, tx pgx.Tx, events []event.Event) error {
	for _, e := range events {
		if err := e.Validate(); err != nil {
			return consume.Permanent(fmt.Errorf("project %s %s: %w", e.Type, e.ID, err))
		}
	}
	fresh, views, err := project(ctx, tx, events, rm.now().UTC(), true)
	if err != nil {
		return err
	}
	for _, e := range events {
		rm.count(e, fresh)
	}
	rm.dash.observe(events, fresh, views)
	if ce := rm.log.Check(zap.DebugLevel, "projected batch"); ce != nil {
		ce.Write(zap.Int("events", len(events)), zap.Int("orders", len(views)))
	}
	return nil
}

// count records a projected event in the lag figures, or a duplicate.
// Recorded before the commit: a transaction that then fails to commit and is
// retried counts its events twice, which a lag summary tolerates.
func (rm *readModel) count(e event.Event, fresh map[string]bool) {
	if !fresh[e.ID] {
		rm.duplicates.Add(1)
		return
	}
	lag := rm.now().UTC().Sub(e.OccurredAt)
	rm.projected.Add(1)
	rm.lags.add(float64(lag) / float64(time.Millisecond))
	rm.lagSeconds.Observe(lag.Seconds())
}

// project records events and saves the views of the orders they change,
// inside tx, at now: the projection both the consumers and the rebuild run.
// fresh holds the ids of the events new to the read model; views are the
// views computed (saved unless the stored one has seen more). lock takes the
// per-order locks (see recordAndLoadAll).
func project(ctx context.Context, tx pgx.Tx, events []event.Event, now time.Time, lock bool) (fresh map[string]bool, views []View, err error) {
	fresh, byOrder, pruned, err := recordAndLoadAll(ctx, tx, events, now, lock)
	if err != nil {
		return nil, nil, err
	}
	// An order's view changes only if one of its events is new: recorded
	// now, or new to its pruned view (neither seen nor on its timeline).
	changed := map[string][]Recorded{}
	for _, e := range events {
		base, ok := pruned[e.OrderID]
		switch {
		case !ok:
			if fresh[e.ID] {
				changed[e.OrderID] = nil
			}
		case !base.Seen.Has(e.Stream, e.Seq) && !slices.ContainsFunc(base.Timeline, func(s Step) bool { return s.EventID == e.ID }):
			fresh[e.ID] = true
			changed[e.OrderID] = append(changed[e.OrderID], Recorded{
				EventID: e.ID, Type: e.Type, OrderID: e.OrderID, CausationID: e.CausationID,
				OccurredAt: e.OccurredAt, ProjectedAt: now, Body: e.Body, Stream: e.Stream, Seq: e.Seq,
			})
		}
	}
	if len(changed) == 0 {
		return fresh, nil, nil
	}
	views = make([]View, 0, len(changed))
	for id, late := range changed {
		if base, ok := pruned[id]; ok {
			views = append(views, Fold(base, append(byOrder[id], late...)))
			continue
		}
		views = append(views, Project(byOrder[id]))
	}
	// Nothing reads the views after this in the transaction: under the
	// loop's set-based pass they go with its COMMIT (pg.ExecOrHold).
	q, args, err := saveViewsSQL(views, now)
	if err != nil {
		return nil, nil, err
	}
	b := &pgx.Batch{}
	b.Queue(q, args...)
	if err := pg.ExecOrHold(ctx, tx, b); err != nil {
		return nil, nil, fmt.Errorf("save %d views: %w", len(views), err)
	}
	return fresh, views, nil
}
