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
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/pg"
	"github.com/jetsaga/jetsaga/internal/telemetry"
)

// Add inserts events into the outbox table of the transaction's schema, in
// one statement however many they are. The events become visible to the
// relay only when tx commits. Under a context from Collect, Add also
// records the rows it wrote there. An event without a trace context gets
// the one Traced gives it.
//
// Under a context from Defer, Add inserts nothing yet: it keeps the events
// for Commit, which inserts them in the round trip of the COMMIT.
func Add(ctx context.Context, tx pgx.Tx, events ...event.Event) error {
	if len(events) == 0 {
		return nil
	}
	Traced(ctx, events)
	if d, ok := ctx.Value(deferredKey{}).(*Deferred); ok {
		d.events = append(d.events, events...)
		return nil
	}
	q, args := insertSQL(events)
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("outbox add %d events: %w", len(events), err)
	}
	return recordInserted(ctx, rows, events)
}

// Deferred holds the events Add kept under a context from Defer, and the
// statements pg.ExecOrHold kept there.
type Deferred struct {
	events []event.Event
	held   *pg.Held
}

type deferredKey struct{}

// Defer returns a context under which Add keeps its events in the returned
// Deferred instead of inserting them, and pg.ExecOrHold its statements;
// Commit sends both with the COMMIT. For a transaction that commits whole:
// rows rolled back to a savepoint would still be inserted.
func Defer(ctx context.Context) (context.Context, *Deferred) {
	ctx, held := pg.WithHeld(ctx)
	d := &Deferred{held: held}
	return context.WithValue(ctx, deferredKey{}, d), d
}

// ErrDeferred marks Commit's failure to run what was deferred (a held
// statement or the insert of the deferred events): the transaction did not
// commit and is to be rolled back, as when the handler's own statement
// fails.
var ErrDeferred = errors.New("outbox: deferred writes failed")

// Commit commits tx after running the statements d holds (pg.ExecOrHold)
// and inserting the events it holds (in the order Add was given them, after
// any row the transaction wrote otherwise), all in one round trip with the
// COMMIT where tx allows it (pg.CommitWith), and records the events' rows
// under ctx as Add does (Collect). With nothing deferred it is tx.Commit. A
// failed statement returns an error wrapping ErrDeferred, and tx is then to
// be rolled back.
func Commit(ctx context.Context, tx pgx.Tx, d *Deferred) error {
	if d == nil || (len(d.events) == 0 && d.held.Len() == 0) {
		return tx.Commit(ctx)
	}
	b := &pgx.Batch{}
	d.held.Queue(b)
	if len(d.events) > 0 {
		q, args := insertSQL(d.events)
		b.Queue(q, args...)
	}
	var done bool
	err := pg.CommitWith(ctx, tx, b, func(br pgx.BatchResults) error {
		for range d.held.Len() {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("%w: %w", ErrDeferred, err)
			}
		}
		if len(d.events) > 0 {
			rows, err := br.Query()
			if err == nil {
				err = recordInserted(ctx, rows, d.events)
			}
			if err != nil {
				return fmt.Errorf("%w: outbox add: %w", ErrDeferred, err)
			}
		}
		done = true
		return nil
	})
	if err != nil && done {
		return fmt.Errorf("outbox commit: %w", err)
	}
	return err
}

// insertSQL returns the statement inserting events into the outbox and its
// arguments.
func insertSQL(events []event.Event) (string, []any) {
	n := len(events)
	ids, types, orders, causes := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	occurred := make([]time.Time, n)
	bodies := make([][]byte, n)
	for i, e := range events {
		ids[i], types[i], orders[i], causes[i] = e.ID, string(e.Type), e.OrderID, e.CausationID
		occurred[i], bodies[i] = e.OccurredAt, e.Body
	}
	parents, states := TraceColumns(events)
	// WITH ORDINALITY keeps the given order in the seq the rows get.
	return `
		INSERT INTO outbox (event_id, event_type, order_id, causation_id, occurred_at, body, trace_parent, trace_state)
		SELECT t.id, t.typ, t.ord, t.cause, t.occ, t.body, NULLIF(t.tp, ''), NULLIF(t.ts, '')
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bytea[], $7::text[], $8::text[])
			WITH ORDINALITY AS t(id, typ, ord, cause, occ, body, tp, ts, n)
		ORDER BY t.n
		RETURNING seq, event_id::text`,
		[]any{ids, types, orders, causes, occurred, bodies, parents, states}
}

// recordInserted reads the seqs insertSQL returned for events and records
// the rows under ctx (Wrote).
func recordInserted(ctx context.Context, rows pgx.Rows, events []event.Event) error {
	n := len(events)
	seqOf := make(map[string]int64, n)
	var (
		seq int64
		id  string
	)
	if _, err := pgx.ForEachRow(rows, []any{&seq, &id}, func() error {
		seqOf[id] = seq
		return nil
	}); err != nil {
		return fmt.Errorf("outbox add %d events: %w", n, err)
	}
	rowsOf := make([]Row, len(events))
	for i, e := range events {
		rowsOf[i] = Row{Seq: seqOf[e.ID], Event: e}
	}
	Wrote(ctx, rowsOf...)
	return nil
}

// Traced gives each event that has no trace context the one telemetry.For
// finds under ctx: that of the span that handled its cause (under a consumer
// loop), or of the span in ctx (an HTTP request). With tracing off and no
// trace context coming in, it finds none and costs two context lookups per
// event.
func Traced(ctx context.Context, events []event.Event) {
	for i := range events {
		if events[i].Trace.IsZero() {
			events[i].Trace = telemetry.For(ctx, events[i].CausationID)
		}
	}
}

// TraceColumns returns the events' trace contexts as the text[] arguments
// of the outbox's trace_parent and trace_state columns (the SQL stores an
// empty one as NULL, with NULLIF). When no event has one it returns nil
// slices, which unnest pads with NULL: no allocation on the untraced path.
func TraceColumns(events []event.Event) (parents, states []string) {
	for i, e := range events {
		if e.Trace.IsZero() {
			continue
		}
		if parents == nil {
			parents, states = make([]string, len(events)), make([]string, len(events))
		}
		parents[i], states[i] = e.Trace.Parent, e.Trace.State
	}
	return parents, states
}

// Wrote records, under a context from Collect, outbox rows a caller wrote
// with SQL of its own (a single statement that writes state and events
// together); elsewhere it does nothing.
func Wrote(ctx context.Context, rows ...Row) {
	if c, ok := ctx.Value(collectorKey{}).(*Collector); ok {
		c.rows = append(c.rows, rows...)
	}
}

type collectorKey struct{}

// Collector gathers the rows Add writes under a context from Collect, so
// that once the transaction commits they can be handed to the relay
// (Relay.Hand) instead of read back. It belongs to one goroutine.
type Collector struct{ rows []Row }

// Collect returns a context under which Add records what it writes in the
// returned Collector.
func Collect(ctx context.Context) (context.Context, *Collector) {
	c := &Collector{}
	return context.WithValue(ctx, collectorKey{}, c), c
}

// Rows returns the rows recorded so far.
func (c *Collector) Rows() []Row { return c.rows }

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
