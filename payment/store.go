package payment

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
)

// The store: every SQL statement of the payment service. Table names are
// unqualified because search_path is the service schema.

// db is what the store needs of a pgx.Tx or a *pgxpool.Pool.
type db interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// errNotFound is returned when an order has no payment.
var errNotFound = errors.New("not found")

// Payment is one order's payment, the row of the payments table and the body
// of GET /payments/{order_id}.
type Payment struct {
	OrderID     string    `json:"order_id"`
	PaymentID   string    `json:"payment_id"`
	AmountCents int64     `json:"amount_cents"`
	Status      Status    `json:"status"`
	Reason      string    `json:"reason"`
	CreatedAt   time.Time `json:"created_at"`
	// RefundedAt is when a REFUNDED payment was given back.
	RefundedAt *time.Time `json:"refunded_at,omitempty"`
}

// errNoOrder: a charge for an order whose order.created payment has not
// seen (yet): retried, as the two consumers run side by side.
var errNoOrder = errors.New("order.created of the order not seen yet")

// ErrDisagrees: an event contradicts what payment knows of the order (a
// forgery or a bug); it is dead-lettered with the reason.
var ErrDisagrees = errors.New("event disagrees with the order")

// insertPaymentsWithEvents records each payment unless its order has one
// already, and adds to the outbox the event of each payment it recorded
// (outs[i] records pays[i]; orders are distinct), in one statement. A
// payment is recorded only for the total of its order as order.created
// told it (the orders table): the same statement returns that total, and a
// payment of another amount is ErrDisagrees, one of an order not known yet
// errNoOrder (the caller's transaction is then rolled back). It returns the
// orders whose payment it recorded, and tells outbox.Wrote the rows it
// wrote.
func insertPaymentsWithEvents(ctx context.Context, q db, pays []Payment, outs []event.Event) (map[string]bool, error) {
	n := len(pays)
	outbox.Traced(ctx, outs)
	tps, tss := outbox.TraceColumns(outs)
	orders, ids, statuses, reasons := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	amounts := make([]int64, n)
	evIDs, evTypes, causes := make([]string, n), make([]string, n), make([]string, n)
	occurred := make([]time.Time, n)
	bodies := make([][]byte, n)
	for i, p := range pays {
		orders[i], ids[i], statuses[i], reasons[i], amounts[i] = p.OrderID, p.PaymentID, string(p.Status), p.Reason, p.AmountCents
		e := outs[i]
		evIDs[i], evTypes[i], causes[i], occurred[i], bodies[i] = e.ID, string(e.Type), e.CausationID, e.OccurredAt, e.Body
	}
	rows, err := q.Query(ctx, `
		WITH expected AS (
			SELECT order_id, total_cents FROM orders WHERE order_id = ANY($1)),
		paid AS (
			INSERT INTO payments (order_id, payment_id, amount_cents, status, reason)
			SELECT u.o, u.id, u.amount, u.status, u.reason
			FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[]) AS u(o, id, amount, status, reason)
			JOIN expected x ON x.order_id = u.o AND x.total_cents = u.amount
			ORDER BY 1
			ON CONFLICT (order_id) DO NOTHING
			RETURNING order_id),
		written AS (
			INSERT INTO outbox (event_id, event_type, order_id, causation_id, occurred_at, body, trace_parent, trace_state)
			SELECT e.id, e.typ, e.ord, e.cause, e.occ, e.body, NULLIF(e.tp, ''), NULLIF(e.ts, '')
			FROM unnest($6::uuid[], $7::text[], $1::text[], $8::text[], $9::timestamptz[], $10::bytea[], $11::text[], $12::text[])
				WITH ORDINALITY AS e(id, typ, ord, cause, occ, body, tp, ts, n)
			WHERE e.ord IN (SELECT order_id FROM paid)
			ORDER BY e.n
			RETURNING order_id, seq)
		SELECT u.o, x.total_cents, w.seq
		FROM unnest($1::text[]) AS u(o)
		LEFT JOIN expected x ON x.order_id = u.o
		LEFT JOIN written w ON w.order_id = u.o`,
		orders, ids, amounts, statuses, reasons, evIDs, evTypes, causes, occurred, bodies, tps, tss)
	if err != nil {
		return nil, fmt.Errorf("insert %d payments: %w", n, err)
	}
	outOf := make(map[string]event.Event, n)
	amountOf := make(map[string]int64, n)
	for i, e := range outs {
		outOf[e.OrderID] = e
		amountOf[e.OrderID] = pays[i].AmountCents
	}
	inserted := make(map[string]bool, n)
	var (
		order string
		total *int64
		seq   *int64
		errs  []error
		early []string // inventory.reserved ids of orders whose order.created is not seen yet
	)
	if _, err := pgx.ForEachRow(rows, []any{&order, &total, &seq}, func() error {
		switch {
		case seq != nil:
			inserted[order] = true
			outbox.Wrote(ctx, outbox.Row{Seq: *seq, Event: outOf[order]})
		case total == nil:
			early = append(early, outOf[order].CausationID) // the inventory.reserved

		case *total != amountOf[order]:
			errs = append(errs, consume.Permanent(fmt.Errorf("charge order %s: %w: inventory.reserved %s asks for %d cents, the order's total is %d",
				order, ErrDisagrees, outOf[order].CausationID, amountOf[order], *total)))
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("insert %d payments: %w", n, err)
	}
	if len(early) > 0 && len(errs) == 0 {
		// Only charges whose order.created payment has not seen yet: the
		// loop takes them out of the batch and applies the rest again.
		return nil, &consume.Later{IDs: early, Err: consume.NotYet(errNoOrder)}
	}
	if len(errs) > 0 {
		// A charge that disagrees: refuse the whole batch; the loop rolls
		// it back and hands the events over one by one, so that each is
		// retried or dead-lettered alone.
		if len(early) > 0 {
			errs = append(errs, errNoOrder)
		}
		return nil, errors.Join(errs...)
	}
	return inserted, nil
}

// getPayment returns the order's payment, or errNotFound.
func getPayment(ctx context.Context, q db, orderID string) (Payment, error) {
	rows, err := q.Query(ctx, `
		SELECT order_id, payment_id, amount_cents, status, reason, created_at, refunded_at
		FROM payments WHERE order_id = $1`, orderID)
	if err != nil {
		return Payment{}, fmt.Errorf("get payment of order %s: %w", orderID, err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, func(r pgx.CollectableRow) (Payment, error) {
		var p Payment
		err := r.Scan(&p.OrderID, &p.PaymentID, &p.AmountCents, &p.Status, &p.Reason, &p.CreatedAt, &p.RefundedAt)
		return p, err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Payment{}, fmt.Errorf("payment of order %s: %w", orderID, errNotFound)
	}
	if err != nil {
		return Payment{}, fmt.Errorf("get payment of order %s: %w", orderID, err)
	}
	p.CreatedAt = p.CreatedAt.UTC()
	return p, nil
}

// learnt is what payment-orders learns of orders in one batch: the totals
// of order.created, the orders order.confirmed confirmed.
type learnt struct {
	created   []string // order ids, distinct
	totals    []int64
	createdBy []string // the order.created event ids
	confirmed []string // order ids, distinct
	confTotal []int64  // their totals, for an order.confirmed that comes first
}

// cancelPayments records what the batch learnt of orders, then applies
// order.cancelled to the orders' payments, in one round trip: a COMPLETED
// payment becomes REFUNDED, and an order with no payment whose entry in
// noCharge has status CANCELLED gets that row (nothing is charged, and a
// late inventory.reserved charges nothing). Orders are distinct. It returns
// the payments it refunded, as they were before (COMPLETED), the orders it
// marked CANCELLED, and the cancelled orders payment knows were confirmed:
// a cancellation that contradicts order.confirmed, which the caller refuses
// (rolling all of it back).
func cancelPayments(ctx context.Context, tx pgx.Tx, l learnt, noCharge []Payment, now time.Time) (refunded []Payment, marked map[string]bool, confirmed []string, err error) {
	n := len(noCharge)
	orders := make([]string, n)
	var markOrders, ids, reasons []string
	for i, p := range noCharge {
		orders[i] = p.OrderID
		if p.Status == Cancelled {
			markOrders, ids, reasons = append(markOrders, p.OrderID), append(ids, p.PaymentID), append(reasons, p.Reason)
		}
	}
	b := &pgx.Batch{}
	b.Queue(`
		INSERT INTO orders (order_id, total_cents, created_event_id)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[]) ORDER BY 1
		ON CONFLICT (order_id) DO NOTHING`, l.created, l.totals, l.createdBy)
	b.Queue(`
		INSERT INTO orders (order_id, total_cents, confirmed)
		SELECT o, t, true FROM unnest($1::text[], $2::bigint[]) AS u(o, t) ORDER BY 1
		ON CONFLICT (order_id) DO UPDATE SET confirmed = true`, l.confirmed, l.confTotal)
	b.Queue(`SELECT order_id FROM orders WHERE order_id = ANY($1) AND confirmed ORDER BY 1`, orders)
	b.Queue(`
		INSERT INTO payments (order_id, payment_id, amount_cents, status, reason)
		SELECT o, id, 0, 'CANCELLED', r FROM unnest($1::text[], $2::text[], $3::text[]) AS t(o, id, r)
		ORDER BY o
		ON CONFLICT (order_id) DO NOTHING
		RETURNING order_id`, markOrders, ids, reasons)
	b.Queue(`
		UPDATE payments SET status = 'REFUNDED', refunded_at = $2
		WHERE order_id = ANY($1) AND status = 'COMPLETED'
		RETURNING order_id, payment_id, amount_cents, reason, created_at`, orders, now)
	br := tx.SendBatch(ctx, b)
	defer func() { _ = br.Close() }()
	for range 2 {
		if _, err := br.Exec(); err != nil {
			return nil, nil, nil, fmt.Errorf("record %d orders: %w", len(l.created)+len(l.confirmed), err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read confirmations of %d orders: %w", n, err)
	}
	if confirmed, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, nil, nil, fmt.Errorf("read confirmations of %d orders: %w", n, err)
	}
	marked = make(map[string]bool)
	if rows, err = br.Query(); err != nil {
		return nil, nil, nil, fmt.Errorf("cancel payments of %d orders: %w", n, err)
	}
	var order string
	if _, err := pgx.ForEachRow(rows, []any{&order}, func() error {
		marked[order] = true
		return nil
	}); err != nil {
		return nil, nil, nil, fmt.Errorf("cancel payments of %d orders: %w", n, err)
	}
	if rows, err = br.Query(); err != nil {
		return nil, nil, nil, fmt.Errorf("refund payments of %d orders: %w", n, err)
	}
	refunded, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Payment, error) {
		p := Payment{Status: Completed}
		err := r.Scan(&p.OrderID, &p.PaymentID, &p.AmountCents, &p.Reason, &p.CreatedAt)
		return p, err
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("refund payments of %d orders: %w", n, err)
	}
	return refunded, marked, confirmed, nil
}
