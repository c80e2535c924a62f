package order

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/pg"
)

// expireBatch bounds the orders one scheduler transaction cancels.
const expireBatch = 256

// Run is the deadline scheduler (service.Runner): until ctx is done it
// cancels, with reason timeout, every PENDING or RESERVED order past its
// deadline. Each pass claims due orders with FOR UPDATE SKIP LOCKED over the
// open-orders deadline index, so several order instances share the work
// without waiting for each other, and an order a handler is moving right now
// is left to the next pass. At rest a pass is one index probe outside any
// transaction. With deadlines off it returns at once.
func (s *Service) Run(ctx context.Context) error {
	if s.deadline <= 0 {
		return nil
	}
	s.log.Info("deadline scheduler running", zap.Duration("saga_deadline", s.deadline), zap.Duration("every", s.deadlineEvery))
	t := time.NewTicker(s.deadlineEvery)
	defer t.Stop()
	for {
		n, err := s.ExpireDue(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			s.log.Warn("deadline pass failed; trying again", zap.Error(err))
		case n == expireBatch:
			continue // more may be due
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ExpireDue runs one scheduler pass: it cancels up to expireBatch orders past
// their deadline, in one transaction with their order.cancelled events, hands
// the events to the outbox relay, and returns how many it cancelled.
func (s *Service) ExpireDue(ctx context.Context) (int, error) {
	now := s.now()
	var due bool
	if err := s.pool.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM orders
		               WHERE status IN ('PENDING', 'RESERVED') AND deadline IS NOT NULL AND deadline <= $1)`,
		now).Scan(&due); err != nil {
		return 0, fmt.Errorf("look for orders past their deadline: %w", err)
	}
	if !due {
		return 0, nil
	}
	var (
		cancelled []Order
		rows      []outbox.Row
	)
	err := pg.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		cancelled, rows = nil, nil
		cctx, collected := outbox.Collect(ctx)
		due, err := claimDue(ctx, tx, now, expireBatch)
		if err != nil {
			return err
		}
		prev := make(map[string]int, len(due))
		var out []event.Event
		for _, o := range due {
			tr := o.Expire(now)
			if !tr.Changed {
				continue
			}
			cause := o.CreatedEventID
			if cause == "" {
				// Placed before the order.created id was kept: the
				// contract wants a cause, and no event caused a timeout.
				id, err := uuid.NewV7()
				if err != nil {
					return fmt.Errorf("cause of timeout of order %s: %w", o.ID, err)
				}
				cause = id.String()
			}
			e, err := event.New(event.OrderCancelled, o.ID, cause, tr.Emit, now)
			if err != nil {
				return fmt.Errorf("build %s for order %s: %w", event.OrderCancelled, o.ID, err)
			}
			e.Trace = o.Trace // the saga's trace, from its order.created
			prev[o.ID] = o.Version
			cancelled = append(cancelled, tr.Order)
			out = append(out, e)
		}
		if len(cancelled) == 0 {
			return nil
		}
		if err := updateOrders(ctx, tx, prev, cancelled); err != nil {
			return err
		}
		if err := outbox.Add(cctx, tx, out...); err != nil {
			return err
		}
		rows = collected.Rows()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cancel orders past their deadline: %w", err)
	}
	if len(cancelled) == 0 {
		return 0, nil
	}
	s.hand(rows)
	s.timeouts.Add(float64(len(cancelled)))
	for _, o := range cancelled {
		s.log.Info("order timed out", zap.String("order_id", o.ID), zap.Time("deadline", o.Deadline),
			zap.String("event_type", string(event.OrderCancelled)), zap.String("reason", o.Reason))
	}
	return len(cancelled), nil
}

// claimDue locks up to limit orders that are PENDING or RESERVED and past
// their deadline at now, oldest deadline first, skipping rows another
// transaction holds.
func claimDue(ctx context.Context, tx pgx.Tx, now time.Time, limit int) ([]Order, error) {
	rows, err := tx.Query(ctx, `
		SELECT `+orderColumns+` FROM orders
		WHERE status IN ('PENDING', 'RESERVED') AND deadline IS NOT NULL AND deadline <= $1
		ORDER BY deadline
		LIMIT $2
		FOR UPDATE SKIP LOCKED`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("claim orders past their deadline: %w", err)
	}
	defer rows.Close()
	var due []Order
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, fmt.Errorf("claim orders past their deadline: %w", err)
		}
		due = append(due, o)
	}
	if err := rows.Err(); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("claim orders past their deadline: %w", err)
	}
	return due, nil
}
