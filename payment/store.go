package payment

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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

// insertPayment records p unless the order has a payment already (the
// business key: one payment per order, ever). It returns whether it did.
func insertPayment(ctx context.Context, q db, p Payment) (bool, error) {
	tag, err := q.Exec(ctx, `
		INSERT INTO payments (order_id, payment_id, amount_cents, status, reason)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (order_id) DO NOTHING`,
		p.OrderID, p.PaymentID, p.AmountCents, string(p.Status), p.Reason)
	if err != nil {
		return false, fmt.Errorf("insert payment of order %s: %w", p.OrderID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// insertPaymentsWithEvents records each payment unless its order has one
// already, and adds to the outbox the event of each payment it recorded
// (outs[i] records pays[i]; orders are distinct), in one statement. It
// returns the orders whose payment it recorded, and tells outbox.Wrote the
// rows it wrote.
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
		WITH paid AS (
			INSERT INTO payments (order_id, payment_id, amount_cents, status, reason)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[])
			ORDER BY 1
			ON CONFLICT (order_id) DO NOTHING
			RETURNING order_id)
		INSERT INTO outbox (event_id, event_type, order_id, causation_id, occurred_at, body, trace_parent, trace_state)
		SELECT e.id, e.typ, e.ord, e.cause, e.occ, e.body, NULLIF(e.tp, ''), NULLIF(e.ts, '')
		FROM unnest($6::uuid[], $7::text[], $1::text[], $8::text[], $9::timestamptz[], $10::bytea[], $11::text[], $12::text[])
			WITH ORDINALITY AS e(id, typ, ord, cause, occ, body, tp, ts, n)
		WHERE e.ord IN (SELECT order_id FROM paid)
		ORDER BY e.n
		RETURNING order_id, seq`,
		orders, ids, amounts, statuses, reasons, evIDs, evTypes, causes, occurred, bodies, tps, tss)
	if err != nil {
		return nil, fmt.Errorf("insert %d payments: %w", n, err)
	}
	outOf := make(map[string]event.Event, n)
	for _, e := range outs {
		outOf[e.OrderID] = e
	}
	inserted := make(map[string]bool, n)
	var (
		order string
		seq   int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&order, &seq}, func() error {
		inserted[order] = true
		outbox.Wrote(ctx, outbox.Row{Seq: seq, Event: outOf[order]})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("insert %d payments: %w", n, err)
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

// cancelPayments applies order.cancelled to the orders' payments, in one
// round trip: a COMPLETED payment becomes REFUNDED, and an order with no
// payment whose entry in noCharge has status CANCELLED gets that row
// (nothing is charged, and a late inventory.reserved charges nothing).
// Orders are distinct. It returns the payments it refunded, as they were
// before (COMPLETED), and the orders it marked CANCELLED.
func cancelPayments(ctx context.Context, tx pgx.Tx, noCharge []Payment, now time.Time) (refunded []Payment, marked map[string]bool, err error) {
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
	marked = make(map[string]bool)
	rows, err := br.Query()
	if err != nil {
		return nil, nil, fmt.Errorf("cancel payments of %d orders: %w", n, err)
	}
	var order string
	if _, err := pgx.ForEachRow(rows, []any{&order}, func() error {
		marked[order] = true
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("cancel payments of %d orders: %w", n, err)
	}
	if rows, err = br.Query(); err != nil {
		return nil, nil, fmt.Errorf("refund payments of %d orders: %w", n, err)
	}
	refunded, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Payment, error) {
		p := Payment{Status: Completed}
		err := r.Scan(&p.OrderID, &p.PaymentID, &p.AmountCents, &p.Reason, &p.CreatedAt)
		return p, err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("refund payments of %d orders: %w", n, err)
	}
	return refunded, marked, nil
}
