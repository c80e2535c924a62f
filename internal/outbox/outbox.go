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
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsaga/jetsaga/internal/event"
)

// Add inserts events into the outbox table of the transaction's schema, in
// one statement however many they are. The events become visible to the
// relay only when tx commits.
func Add(ctx context.Context, tx pgx.Tx, events ...event.Event) error {
	switch len(events) {
	case 0:
		return nil
	case 1:
		e := events[0]
		_, err := tx.Exec(ctx, `
			INSERT INTO outbox (event_id, event_type, order_id, causation_id, occurred_at, body)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			e.ID, string(e.Type), e.OrderID, e.CausationID, e.OccurredAt, e.Body)
		if err != nil {
			return fmt.Errorf("outbox add %s %s: %w", e.Type, e.ID, err)
		}
		return nil
	}
	n := len(events)
	ids, types, orders, causes := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	occurred := make([]time.Time, n)
	bodies := make([][]byte, n)
	for i, e := range events {
		ids[i], types[i], orders[i], causes[i] = e.ID, string(e.Type), e.OrderID, e.CausationID
		occurred[i], bodies[i] = e.OccurredAt, e.Body
	}
	// WITH ORDINALITY keeps the given order in the seq the rows get.
	_, err := tx.Exec(ctx, `
		INSERT INTO outbox (event_id, event_type, order_id, causation_id, occurred_at, body)
		SELECT t.id, t.typ, t.ord, t.cause, t.occ, t.body
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bytea[])
			WITH ORDINALITY AS t(id, typ, ord, cause, occ, body, n)
		ORDER BY t.n`,
		ids, types, orders, causes, occurred, bodies)
	if err != nil {
		return fmt.Errorf("outbox add %d events: %w", n, err)
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
