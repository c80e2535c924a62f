package readmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// errNotFound says no view exists for the order.
var errNotFound = errors.New("order not found")

// store is the readmodel's SQL.
type store struct {
	pool *pgxpool.Pool
}

// orderLockClass is the first key of the per-order advisory lock that
// serializes the transactions projecting one order:
// pg_advisory_xact_lock(orderLockClass, hashtext(order_id)). The two-key form
// keeps these locks apart from the one-key locks other code takes.
const orderLockClass = int32(0x726d) // "rm"

// recordAndLoadAll locks the orders of events (in order id order), records
// the events and reads back, per order, every recorded event and the stored
// view if it was pruned, in one round trip whatever the number of events.
// fresh holds the ids of the events recorded now. An event is not recorded
// when its order's view has seen its stream sequence (it is in the view
// already), nor when the view was pruned: a pruned view keeps no events, and
// its order's new events are folded into it (Fold).
//
// lock false leaves out the per-order locks: for a writer that has its
// tables to itself (a rebuild).
func recordAndLoadAll(ctx context.Context, tx pgx.Tx, events []event.Event, projectedAt time.Time, lock bool) (fresh map[string]bool, byOrder map[string][]Recorded, pruned map[string]View, err error) {
	n := len(events)
	var (
		ids, orders, types, causes = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		occurred                   = make([]time.Time, n)
		bodies, streams            = make([]string, n), make([]string, n)
		seqs                       = make([]int64, n)
	)
	for i, e := range events {
		ids[i], orders[i], types[i], causes[i] = e.ID, e.OrderID, string(e.Type), e.CausationID
		occurred[i], bodies[i], streams[i], seqs[i] = e.OccurredAt, string(e.Body), e.Stream, int64(e.Seq)
	}
	b := &pgx.Batch{}
	if lock {
		b.Queue(`
		SELECT pg_advisory_xact_lock($1, hashtext(o))
		FROM (SELECT DISTINCT o FROM unnest($2::text[]) AS o ORDER BY o) AS sorted`, orderLockClass, orders)
	}
	// The events recorded are counted in the same statement (counts, see
	// migration 004).
	b.Queue(`
		WITH recorded AS (
			INSERT INTO events (event_id, order_id, event_type, causation_id, occurred_at, projected_at, body, stream, seq)
			SELECT t.id, t.ord, t.typ, t.cause, t.occ, $7, t.body, t.stream, t.seq
			FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[], $8::text[], $9::bigint[])
				AS t(id, ord, typ, cause, occ, body, stream, seq)
			WHERE NOT EXISTS (
				SELECT 1 FROM order_views v
				WHERE v.order_id = t.ord AND (v.pruned OR t.seq = ANY(CASE t.stream
					WHEN $10 THEN v.orders_seqs WHEN $11 THEN v.inventory_seqs WHEN $12 THEN v.payments_seqs END)))
			ON CONFLICT (event_id) DO NOTHING
			RETURNING event_id),
		tally AS (
			INSERT INTO counts (events) SELECT count(*) FROM recorded HAVING count(*) > 0)
		SELECT event_id::text FROM recorded`, ids, orders, types, causes, occurred, bodies, projectedAt, streams, seqs,
		stream.Orders, stream.Inventory, stream.Payments)
	// Project reads the bodies of order.created and order.cancelled only:
	// the others' stay in Postgres (NULL here, a nil Body).
	b.Queue(`
		SELECT event_id::text, order_id, event_type, causation_id, occurred_at, projected_at,
			CASE WHEN event_type = ANY($2) THEN body END, stream, seq
		FROM events WHERE order_id = ANY($1)`, orders, []string{string(event.OrderCreated), string(event.OrderCancelled)})
	b.Queue(`SELECT `+viewColumns+` FROM order_views WHERE order_id = ANY($1) AND pruned`, orders)
	br := tx.SendBatch(ctx, b)
	defer func() {
		if cerr := br.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("project %d events: %w", n, cerr)
		}
	}()
	if lock {
		if _, err := br.Exec(); err != nil {
			return nil, nil, nil, fmt.Errorf("lock %d orders: %w", n, err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("record %d events: %w", n, err)
	}
	recorded, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, nil, nil, fmt.Errorf("record %d events: %w", n, err)
	}
	fresh = make(map[string]bool, len(recorded))
	for _, id := range recorded {
		fresh[id] = true
	}
	if rows, err = br.Query(); err != nil {
		return nil, nil, nil, fmt.Errorf("load events of %d orders: %w", n, err)
	}
	recs, err := pgx.CollectRows(rows, scanRecorded)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load events of %d orders: %w", n, err)
	}
	byOrder = make(map[string][]Recorded)
	for _, r := range recs {
		byOrder[r.OrderID] = append(byOrder[r.OrderID], r)
	}
	if rows, err = br.Query(); err != nil {
		return nil, nil, nil, fmt.Errorf("load pruned views of %d orders: %w", n, err)
	}
	views, err := pgx.CollectRows(rows, scanView)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load pruned views of %d orders: %w", n, err)
	}
	pruned = make(map[string]View, len(views))
	for _, sv := range views {
		pruned[sv.OrderID] = sv.View
	}
	return fresh, byOrder, pruned, nil
}

func scanRecorded(row pgx.CollectableRow) (Recorded, error) {
	var r Recorded
	var typ string
	var seq int64
	err := row.Scan(&r.EventID, &r.OrderID, &typ, &r.CausationID, &r.OccurredAt, &r.ProjectedAt, &r.Body, &r.Stream, &seq)
	r.Type, r.Seq = event.Type(typ), uint64(seq)
	return r, err
}

// saveViewsSQL returns the statement that writes views (of distinct orders),
// stamped updatedAt, each unless its stored view has seen a stream sequence
// it has not (an older view never overwrites a newer one) or is the same
// (same timeline and sequences: the row, its updated_at included, stays as it
// is). A view whose timeline is the same but that has seen more sequences (a
// re-emitted or republished event) records them and keeps its updated_at. The
// statement returns how many rows changed. Views that become CONFIRMED or
// CANCELLED (or stop being so) are counted in the same statement (counts, see
// migration 004): the statuses before it are those of the rows it changes,
// which the per-order locks (recordAndLoadAll) keep every other projection
// away from.
func saveViewsSQL(views []View, updatedAt time.Time) (string, []any, error) {
	n := len(views)
	var (
		ids, customers, statuses, reasons = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		items, timelines                  = make([]string, n), make([]string, n)
		oseqs, iseqs, pseqs               = make([]string, n), make([]string, n), make([]string, n)
		totals                            = make([]int64, n)
		versions                          = make([]int32, n)
		last, created                     = make([]time.Time, n), make([]time.Time, n)
		lags                              = make([]float64, n)
	)
	for i, v := range views {
		it, err := json.Marshal(v.Items)
		if err != nil {
			return "", nil, fmt.Errorf("encode items of order %s: %w", v.OrderID, err)
		}
		tl, err := json.Marshal(v.Timeline)
		if err != nil {
			return "", nil, fmt.Errorf("encode timeline of order %s: %w", v.OrderID, err)
		}
		ids[i], customers[i], statuses[i], reasons[i] = v.OrderID, v.CustomerID, string(v.Status), v.Reason
		items[i], timelines[i], totals[i], versions[i] = string(it), string(tl), v.TotalCents, int32(v.Version)
		last[i], lags[i], created[i] = v.LastOccurredAt, v.LagMS, sagaStart(v)
		oseqs[i], iseqs[i], pseqs[i] = arrayLiteral(v.Seen.Orders), arrayLiteral(v.Seen.Inventory), arrayLiteral(v.Seen.Payments)
	}
	// Each view's sequences of a stream travel as one array literal (an
	// array of arrays of differing lengths does not fit unnest), cast to
	// bigint[], which <@ compares.
	return `
		WITH old AS (
			SELECT order_id, status FROM order_views WHERE order_id = ANY($1::text[])),
		saved AS (
		INSERT INTO order_views AS v (order_id, customer_id, items, total_cents, status, reason, version,
			timeline, last_occurred_at, updated_at, lag_ms, orders_seqs, inventory_seqs, payments_seqs, created_at)
		SELECT t.id, t.cust, t.items, t.total, t.status, t.reason, t.version, t.timeline, t.last, $11, t.lag,
			t.os::bigint[], t.iseqs::bigint[], t.ps::bigint[], t.created
		FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::bigint[], $5::text[], $6::text[], $7::int[],
			$8::jsonb[], $9::timestamptz[], $10::float8[], $12::text[],
			$13::text[], $14::text[], $15::timestamptz[])
			AS t(id, cust, items, total, status, reason, version, timeline, last, lag, os, iseqs, ps, created)
		ORDER BY t.id
		ON CONFLICT (order_id) DO UPDATE SET
			customer_id = EXCLUDED.customer_id,
			items = EXCLUDED.items,
			total_cents = EXCLUDED.total_cents,
			status = EXCLUDED.status,
			reason = EXCLUDED.reason,
			version = EXCLUDED.version,
			timeline = EXCLUDED.timeline,
			last_occurred_at = EXCLUDED.last_occurred_at,
			updated_at = CASE WHEN v.timeline IS DISTINCT FROM EXCLUDED.timeline
				THEN EXCLUDED.updated_at ELSE v.updated_at END,
			lag_ms = EXCLUDED.lag_ms,
			orders_seqs = EXCLUDED.orders_seqs,
			inventory_seqs = EXCLUDED.inventory_seqs,
			payments_seqs = EXCLUDED.payments_seqs,
			created_at = EXCLUDED.created_at
		WHERE v.orders_seqs <@ EXCLUDED.orders_seqs
			AND v.inventory_seqs <@ EXCLUDED.inventory_seqs
			AND v.payments_seqs <@ EXCLUDED.payments_seqs
			AND (v.timeline IS DISTINCT FROM EXCLUDED.timeline
				OR v.orders_seqs <> EXCLUDED.orders_seqs
				OR v.inventory_seqs <> EXCLUDED.inventory_seqs
				OR v.payments_seqs <> EXCLUDED.payments_seqs)
		RETURNING v.order_id, v.status),
		delta AS (
			SELECT count(*) AS changed,
				count(*) FILTER (WHERE saved.status = 'CONFIRMED') - count(*) FILTER (WHERE old.status = 'CONFIRMED') AS confirmed,
				count(*) FILTER (WHERE saved.status = 'CANCELLED') - count(*) FILTER (WHERE old.status = 'CANCELLED') AS cancelled
			FROM saved LEFT JOIN old USING (order_id)),
		tally AS (
			INSERT INTO counts (confirmed, cancelled)
			SELECT confirmed, cancelled FROM delta WHERE confirmed <> 0 OR cancelled <> 0)
		SELECT changed FROM delta`,
		[]any{ids, customers, items, totals, statuses, reasons, versions, timelines, last, lags, updatedAt,
			oseqs, iseqs, pseqs, created}, nil
}

// arrayLiteral writes seqs as a Postgres array literal: {1,2,3}.
func arrayLiteral(seqs []int64) string {
	b := make([]byte, 0, 2+len(seqs)*8)
	b = append(b, '{')
	for i, q := range seqs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, q, 10)
	}
	return string(append(b, '}'))
}

// StoredView is a view as read back from order_views.
type StoredView struct {
	View
	UpdatedAt time.Time `json:"updated_at"`
}

// viewColumns are the columns scanView reads, in its order.
const viewColumns = `order_id, customer_id, items, total_cents, status, reason, version, timeline,
	last_occurred_at, updated_at, lag_ms, orders_seqs, inventory_seqs, payments_seqs`

func scanView(row pgx.CollectableRow) (StoredView, error) {
	var sv StoredView
	var status string
	var items, timeline []byte
	err := row.Scan(&sv.OrderID, &sv.CustomerID, &items, &sv.TotalCents, &status, &sv.Reason, &sv.Version, &timeline,
		&sv.LastOccurredAt, &sv.UpdatedAt, &sv.LagMS, &sv.Seen.Orders, &sv.Seen.Inventory, &sv.Seen.Payments)
	if err != nil {
		return StoredView{}, err
	}
	sv.Status = Status(status)
	if err := json.Unmarshal(items, &sv.Items); err != nil {
		return StoredView{}, fmt.Errorf("decode items of order %s: %w", sv.OrderID, err)
	}
	if err := json.Unmarshal(timeline, &sv.Timeline); err != nil {
		return StoredView{}, fmt.Errorf("decode timeline of order %s: %w", sv.OrderID, err)
	}
	sv.LastOccurredAt = sv.LastOccurredAt.UTC()
	sv.UpdatedAt = sv.UpdatedAt.UTC()
	return sv, nil
}

// view returns the order's stored view, or errNotFound.
func (s *store) view(ctx context.Context, orderID string) (StoredView, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+viewColumns+` FROM order_views WHERE order_id = $1`, orderID)
	if err != nil {
		return StoredView{}, fmt.Errorf("read view of order %s: %w", orderID, err)
	}
	sv, err := pgx.CollectExactlyOneRow(rows, scanView)
	if errors.Is(err, pgx.ErrNoRows) {
		return StoredView{}, errNotFound
	}
	if err != nil {
		return StoredView{}, fmt.Errorf("read view of order %s: %w", orderID, err)
	}
	return sv, nil
}

// Summary is one order of the list.
type Summary struct {
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Status     Status    `json:"status"`
	Reason     string    `json:"reason"`
	TotalCents int64     `json:"total_cents"`
	Version    int       `json:"version"`
	UpdatedAt  time.Time `json:"updated_at"`
	LagMS      float64   `json:"lag_ms"`
}

// list returns up to limit views with order_id > after, by order_id, of the
// given status ("" for any).
func (s *store) list(ctx context.Context, status Status, after string, limit int) ([]Summary, error) {
	const cols = `order_id, customer_id, status, reason, total_cents, version, updated_at, lag_ms`
	var rows pgx.Rows
	var err error
	// Two statements rather than "$1 = '' OR status = $1", so that each has a
	// plan that walks its index.
	if status == "" {
		rows, err = s.pool.Query(ctx, `SELECT `+cols+` FROM order_views
			WHERE order_id > $1 ORDER BY order_id LIMIT $2`, after, limit)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT `+cols+` FROM order_views
			WHERE status = $1 AND order_id > $2 ORDER BY order_id LIMIT $3`, string(status), after, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Summary, error) {
		var o Summary
		var st string
		err := row.Scan(&o.OrderID, &o.CustomerID, &st, &o.Reason, &o.TotalCents, &o.Version, &o.UpdatedAt, &o.LagMS)
		o.Status = Status(st)
		o.UpdatedAt = o.UpdatedAt.UTC()
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	return out, nil
}

// counts returns the number of views per status (every status present) and
// the number of events recorded, at one snapshot, without counting either
// table: at a million sagas `SELECT status, count(*) FROM order_views GROUP
// BY status` scans 2.3 GB, and /stats and the dashboard (every second while
// a page watches) ask often. The views in flight are counted exactly from
// the partial index order_views_in_flight (they are few, however long the
// history); the terminal views and the events are the sums of the counts
// table, which the projection and the pruner append deltas to in the
// transactions that change them, once per statement, and which
// compactCounts keeps to a few rows (migration 004 says why not a counter
// row: every consumer's transaction would wait on it).
func (s *store) counts(ctx context.Context) (map[Status]int64, int64, error) {
	var pending, reserved, confirmed, cancelled, events int64
	err := s.pool.QueryRow(ctx, countsSQL).Scan(&pending, &reserved, &confirmed, &cancelled, &events)
	if err != nil {
		return nil, 0, fmt.Errorf("count orders and events: %w", err)
	}
	return map[Status]int64{Pending: pending, Reserved: reserved, Confirmed: confirmed, Cancelled: cancelled}, events, nil
}

// countsSQL is counts' query: the views in flight by status, from
// order_views_in_flight (the condition is its predicate), and the sums of
// the counts table.
const countsSQL = `
	SELECT f.pending, f.reserved, c.confirmed, c.cancelled, c.events
	FROM (SELECT count(*) FILTER (WHERE status = 'PENDING') AS pending,
			count(*) FILTER (WHERE status = 'RESERVED') AS reserved
		FROM order_views WHERE ` + inFlightSQL + `) AS f,
		(SELECT coalesce(sum(confirmed), 0) AS confirmed, coalesce(sum(cancelled), 0) AS cancelled,
			coalesce(sum(events), 0) AS events
		FROM counts) AS c`

// compactCounts folds the rows of the counts table into one, so that a
// reader sums a few rows. Rows are moved by one statement (deleted and their
// sum inserted), so a reader sees the sum before or after, never a part; two
// compactions at once move each row once.
func (s *store) compactCounts(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `
		WITH moved AS (DELETE FROM counts RETURNING confirmed, cancelled, events)
		INSERT INTO counts (confirmed, cancelled, events)
		SELECT sum(confirmed), sum(cancelled), sum(events) FROM moved HAVING count(*) > 0`)
	if err != nil {
		return fmt.Errorf("compact counts: %w", err)
	}
	return nil
}
