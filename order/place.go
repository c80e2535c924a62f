package order

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/pg"
	"github.com/jetsaga/jetsaga/internal/telemetry"
)

// maxPerCommit bounds the orders one transaction places.
const maxPerCommit = 128

// combiner lets POST /orders requests that arrive together share one
// transaction (and one WAL flush): the first request that finds nobody
// committing becomes the committer and places what is waiting, batch after
// batch, until nothing is; the others wait for their answer. A lone request
// commits at once, as before; under load the batches grow by themselves.
type combiner struct {
	mu         sync.Mutex
	waiting    []*placement
	committing bool
}

// placement is one request's order and, once placed, its answer.
type placement struct {
	o         Order
	key, hash string
	done      chan placed // buffered: the committer never blocks on it
	// span is the request's span context (not valid when untraced): the
	// order's order.created carries it, whoever commits the batch.
	span trace.SpanContext
}

type placed struct {
	o        Order
	replayed bool
	err      error
}

// place gives o its deadline and writes it and its order.created, sharing a transaction with the
// requests that arrive at the same time. With an idempotency key already
// used, it writes nothing and returns the order that key placed (replayed
// true), or errKeyReused when that order came from a different request.
func (s *Service) place(ctx context.Context, o Order, key, hash string) (Order, bool, error) {
	if s.deadline > 0 && o.Deadline.IsZero() {
		o.Deadline = o.CreatedAt.Add(s.deadline)
	}
	p := &placement{o: o, key: key, hash: hash, done: make(chan placed, 1), span: trace.SpanContextFromContext(ctx)}
	c := &s.combine
	c.mu.Lock()
	c.waiting = append(c.waiting, p)
	if !c.committing {
		c.committing = true
		for {
			n := min(len(c.waiting), maxPerCommit)
			batch := c.waiting[:n:n]
			c.waiting = c.waiting[n:]
			c.mu.Unlock()
			// The batch is others' too: a client that gave up does not
			// cancel it.
			s.placeAll(context.WithoutCancel(ctx), batch)
			c.mu.Lock()
			if len(c.waiting) == 0 {
				c.committing = false
				break
			}
		}
	}
	c.mu.Unlock()
	select {
	case r := <-p.done:
		return r.o, r.replayed, r.err
	case <-ctx.Done():
		// The order may still be placed: a retry with the same
		// Idempotency-Key finds it.
		return Order{}, false, ctx.Err()
	}
}

// placeAll places a batch in one transaction: one statement inserts the
// orders and, for exactly those inserted, their order.created. A request
// whose idempotency key was taken (before, or by an earlier request of the
// same batch) is then answered by placeOne, which replays or refuses it; so
// is every request of a batch whose transaction failed.
func (s *Service) placeAll(ctx context.Context, batch []*placement) {
	inserted, rows, err := s.insertAll(ctx, batch)
	if err != nil {
		s.log.Warn("placing orders together failed; placing them one by one", zap.Int("orders", len(batch)), zap.Error(err))
		inserted = nil
	} else {
		s.perCommit.Observe(float64(len(inserted)))
		s.hand(rows)
	}
	for _, p := range batch {
		if inserted[p.o.ID] {
			p.done <- placed{o: p.o}
			continue
		}
		// The order.created joins its request's trace, not the committer's.
		o, replayed, err := s.placeOne(trace.ContextWithSpanContext(ctx, p.span), p.o, p.key, p.hash)
		p.done <- placed{o: o, replayed: replayed, err: err}
	}
}

// insertAll writes the batch's orders, and the order.created of each order
// it wrote, in one statement, and returns the ids of the orders written and
// their outbox rows.
func (s *Service) insertAll(ctx context.Context, batch []*placement) (map[string]bool, []outbox.Row, error) {
	n := len(batch)
	var (
		ids, customers, statuses, reasons, hashes = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		keys                                      = make([]*string, n)
		items                                     = make([]string, n)
		totals                                    = make([]int64, n)
		versions                                  = make([]int32, n)
		failed                                    = make([]bool, n)
		created, updated                          = make([]time.Time, n), make([]time.Time, n)
		deadlines                                 = make([]*time.Time, n)
		evIDs, evBodies                           = make([]string, n), make([][]byte, n)
		evAt                                      = make([]time.Time, n)
		createdOf                                 = make(map[string]event.Event, n)
		tps, tss                                  []string // trace contexts
	)
	for i, p := range batch {
		o := p.o
		e, err := event.New(event.OrderCreated, o.ID, "", o.Created(), o.CreatedAt)
		if err != nil {
			return nil, nil, fmt.Errorf("build %s for order %s: %w", event.OrderCreated, o.ID, err)
		}
		if e.Trace = telemetry.Inject(p.span); !e.Trace.IsZero() {
			if tps == nil { // untraced, both stay nil: unnest pads them with NULL
				tps, tss = make([]string, n), make([]string, n)
			}
			tps[i], tss[i] = e.Trace.Parent, e.Trace.State
		}
		createdOf[o.ID] = e
		it, err := json.Marshal(o.Items)
		if err != nil {
			return nil, nil, fmt.Errorf("insert order %s: encode items: %w", o.ID, err)
		}
		ids[i], customers[i], statuses[i], reasons[i], hashes[i] = o.ID, o.CustomerID, string(o.Status), o.Reason, p.hash
		if p.key != "" {
			keys[i] = &p.key
		}
		items[i], totals[i], versions[i], failed[i] = string(it), o.TotalCents, int32(o.Version), o.PaymentFailed
		created[i], updated[i], deadlines[i] = o.CreatedAt, o.UpdatedAt, nullTime(o.Deadline)
		evIDs[i], evBodies[i], evAt[i] = e.ID, e.Body, e.OccurredAt
	}
	inserted := make(map[string]bool, n)
	var written []outbox.Row
	b := &pgx.Batch{}
	b.Queue(pg.GenericPlans)
	b.Queue(`
		WITH placed AS (
			INSERT INTO orders (order_id, customer_id, items, total_cents, status, reason,
				payment_failed, version, idempotency_key, request_hash, created_at, updated_at,
				deadline, created_event_id, trace_parent, trace_state)
			SELECT o.id, o.cust, o.items, o.total, o.status, o.reason, o.failed, o.version, o.key, o.hash, o.created, o.updated,
				o.deadline, o.event, NULLIF(o.tp, ''), NULLIF(o.ts, '')
			FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::bigint[], $5::text[], $6::text[], $7::bool[],
				$8::int[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[], $17::timestamptz[], $14::uuid[],
				$18::text[], $19::text[])
				WITH ORDINALITY AS o(id, cust, items, total, status, reason, failed, version, key, hash, created, updated,
					deadline, event, tp, ts, n)
			ORDER BY o.n
			ON CONFLICT (idempotency_key) DO NOTHING
			RETURNING order_id)
		INSERT INTO outbox (event_id, event_type, order_id, causation_id, occurred_at, body, trace_parent, trace_state)
		SELECT e.id, $13, e.ord, '', e.occ, e.body, NULLIF(e.tp, ''), NULLIF(e.ts, '')
		FROM unnest($14::uuid[], $1::text[], $16::timestamptz[], $15::bytea[], $18::text[], $19::text[])
			WITH ORDINALITY AS e(id, ord, occ, body, tp, ts, n)
		WHERE e.ord IN (SELECT order_id FROM placed)
		ORDER BY e.n
		RETURNING order_id, seq`,
		ids, customers, items, totals, statuses, reasons, failed, versions, keys, hashes, created, updated,
		string(event.OrderCreated), evIDs, evBodies, evAt, deadlines, tps, tss)
	// One round trip: BEGIN, these and the COMMIT go together.
	err := pg.Transact(ctx, s.pool, b, func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		var (
			id  string
			seq int64
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &seq}, func() error {
			inserted[id] = true
			written = append(written, outbox.Row{Seq: seq, Event: createdOf[id]})
			return nil
		})
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("insert %d orders: %w", n, err)
	}
	return inserted, written, nil
}
