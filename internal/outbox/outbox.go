// Package outbox implements the transactional outbox: Add writes events in
// the caller's transaction, and a Relay publishes committed rows to JetStream
// with Nats-Msg-Id set to the event id, waits for the stream's acks and only
// then deletes the rows.
//
// A crash between the ack and the delete republishes the same event id; the
// stream's duplicate window and the consumers' inbox absorb it.
package outbox

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/jetsaga/jetsaga/internal/event"
)

// Add inserts events into the outbox table of the transaction's schema. The
// events become visible to the relay only when tx commits.
func Add(ctx context.Context, tx pgx.Tx, events ...event.Event) error {
	for _, e := range events {
		_, err := tx.Exec(ctx, `
			INSERT INTO outbox (event_id, event_type, order_id, causation_id, occurred_at, body)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			e.ID, string(e.Type), e.OrderID, e.CausationID, e.OccurredAt, e.Body)
		if err != nil {
			return fmt.Errorf("outbox add %s %s: %w", e.Type, e.ID, err)
		}
	}
	return nil
}

// Backlog returns the number of rows waiting to be published.
func Backlog(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("outbox backlog: %w", err)
	}
	return n, nil
}
