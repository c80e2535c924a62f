package readmodel

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// compactEvery is how often Run folds the counts table's rows into one: a
// reader of /stats or the dashboard then sums at most this long's deltas
// (one or two rows per projected batch).
const compactEvery = 10 * time.Second

// Run prunes the events table every PruneEvery and compacts the counts every
// compactEvery until ctx is done (the runtime runs it beside the consumers:
// service.Runner), then returns nil. The dashboard's sampler runs beside it,
// and stops with it.
func (rm *readModel) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { _ = rm.hub.Run(ctx) })
	wg.Go(func() { rm.compactLoop(ctx) })
	t := time.NewTicker(rm.cfg.PruneEvery)
	defer t.Stop()
	for {
		views, events, err := rm.prune(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			rm.log.Warn("event prune failed; trying again later", zap.Error(err))
		case views > 0:
			rm.log.Info("events pruned", zap.Int64("views", views), zap.Int64("events", events),
				zap.Duration("retention", rm.cfg.EventRetention))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// compactLoop compacts the counts table every compactEvery until ctx is done.
func (rm *readModel) compactLoop(ctx context.Context) {
	t := time.NewTicker(compactEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := rm.store.compactCounts(ctx); err != nil && ctx.Err() == nil {
			rm.log.Warn("counts compaction failed; trying again later", zap.Error(err))
		}
	}
}

// prune deletes the events of every order whose view is terminal and whose
// last event occurred more than EventRetention ago, PruneBatch orders per
// transaction, and marks those views pruned: from then on each stands for
// its events (Fold). It returns how many views it pruned and how many events
// it deleted.
func (rm *readModel) prune(ctx context.Context) (views, events int64, err error) {
	cutoff := rm.now().Add(-rm.cfg.EventRetention)
	for {
		v, e, err := rm.store.pruneRound(ctx, cutoff, rm.cfg.PruneBatch)
		views, events = views+v, events+e
		if err != nil || v == 0 {
			return views, events, err
		}
		sleep(ctx, rm.cfg.PrunePause)
		if ctx.Err() != nil {
			return views, events, nil
		}
	}
}

// pruneRound prunes up to limit orders in one transaction. It takes each
// order's projection lock first (skipping an order being projected right
// now), then, in a statement that sees what committed before the locks,
// marks the views and deletes their events: so no event a projection is
// writing can slip between the two.
func (s *store) pruneRound(ctx context.Context, cutoff time.Time, limit int) (views, events int64, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("prune events: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, `
		SELECT order_id FROM (
			SELECT order_id FROM order_views
			WHERE NOT pruned AND status IN ('CONFIRMED', 'CANCELLED') AND last_occurred_at < $1
			ORDER BY last_occurred_at LIMIT $2) AS candidate
		WHERE pg_try_advisory_xact_lock($3, hashtext(order_id))`, cutoff, limit, orderLockClass)
	if err != nil {
		return 0, 0, fmt.Errorf("prune events before %s: %w", cutoff.Format(time.RFC3339), err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, 0, fmt.Errorf("prune events before %s: %w", cutoff.Format(time.RFC3339), err)
	}
	if len(ids) == 0 {
		return 0, 0, nil
	}
	if err := tx.QueryRow(ctx, `
		WITH marked AS (
			UPDATE order_views SET pruned = true
			WHERE order_id = ANY($1) AND NOT pruned AND status IN ('CONFIRMED', 'CANCELLED')
			RETURNING order_id),
		gone AS (
			DELETE FROM events e USING marked m WHERE e.order_id = m.order_id RETURNING 1),
		tally AS (
			INSERT INTO counts (events) SELECT -count(*) FROM gone HAVING count(*) > 0)
		SELECT (SELECT count(*) FROM marked), (SELECT count(*) FROM gone)`, ids).Scan(&views, &events); err != nil {
		return 0, 0, fmt.Errorf("prune events of %d orders: %w", len(ids), err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, fmt.Errorf("prune events of %d orders: commit: %w", len(ids), err)
	}
	return views, events, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
