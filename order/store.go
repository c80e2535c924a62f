package order

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Store errors, matched with errors.Is.
var (
	// ErrNotFound: no order with that id (or idempotency key).
	ErrNotFound = errors.New("order not found")
	// errVersionConflict: the row changed between the load and the update,
	// which the row lock rules out; retrying is safe.
	errVersionConflict = errors.New("order version changed concurrently")
)

// querier is what the store's reads need: a pool, a connection or a tx.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// execer is what the store's writes need.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

const orderColumns = `order_id, customer_id, items, total_cents, status, reason,
	payment_failed, version, created_at, updated_at, deadline, coalesce(created_event_id::text, ''),
	coalesce(trace_parent, ''), coalesce(trace_state, '')`

func scanOrder(row pgx.Row, extra ...any) (Order, error) {
	var o Order
	var items []byte
	var status string
	var deadline *time.Time
	dest := append([]any{&o.ID, &o.CustomerID, &items, &o.TotalCents, &status, &o.Reason,
		&o.PaymentFailed, &o.Version, &o.CreatedAt, &o.UpdatedAt, &deadline, &o.CreatedEventID,
		&o.Trace.Parent, &o.Trace.State}, extra...)
	if err := row.Scan(dest...); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return Order{}, ErrNotFound
		}
		return Order{}, err
	}
	if err := json.Unmarshal(items, &o.Items); err != nil {
		return Order{}, fmt.Errorf("decode items of order %s: %w", o.ID, err)
	}
	o.Status = Status(status)
	o.CreatedAt = o.CreatedAt.UTC()
	o.UpdatedAt = o.UpdatedAt.UTC()
	if deadline != nil {
		o.Deadline = deadline.UTC()
	}
	return o, nil
}

// insertOrder inserts a new order. With an idempotency key, a row already
// holding that key wins: nothing is inserted and inserted is false. The
// insert waits for a concurrent transaction inserting the same key, so after
// a false the winner is committed and readable.
func insertOrder(ctx context.Context, tx execer, o Order, idempotencyKey, requestHash string) (inserted bool, err error) {
	var createdEvent *string
	if o.CreatedEventID != "" {
		createdEvent = &o.CreatedEventID
	}
	items, err := json.Marshal(o.Items)
	if err != nil {
		return false, fmt.Errorf("insert order %s: encode items: %w", o.ID, err)
	}
	var key *string
	if idempotencyKey != "" {
		key = &idempotencyKey
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO orders (order_id, customer_id, items, total_cents, status, reason,
			payment_failed, version, idempotency_key, request_hash, created_at, updated_at,
			deadline, created_event_id, trace_parent, trace_state)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, nullif($15, ''), nullif($16, ''))
		ON CONFLICT (idempotency_key) DO NOTHING`,
		o.ID, o.CustomerID, items, o.TotalCents, string(o.Status), o.Reason,
		o.PaymentFailed, o.Version, key, requestHash, o.CreatedAt, o.UpdatedAt, nullTime(o.Deadline), createdEvent,
		o.Trace.Parent, o.Trace.State)
	if err != nil {
		return false, fmt.Errorf("insert order %s: %w", o.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// orderByIdempotencyKey returns the order placed with key and the hash of the
// request that placed it.
func orderByIdempotencyKey(ctx context.Context, q querier, key string) (Order, string, error) {
	var hash string
	o, err := scanOrder(q.QueryRow(ctx, `
		SELECT `+orderColumns+`, request_hash FROM orders WHERE idempotency_key = $1`, key), &hash)
	if err != nil {
		return Order{}, "", fmt.Errorf("order by idempotency key: %w", err)
	}
	return o, hash, nil
}

// getOrder reads one order.
func getOrder(ctx context.Context, q querier, id string) (Order, error) {
	o, err := scanOrder(q.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders WHERE order_id = $1`, id))
	if err != nil {
		return Order{}, fmt.Errorf("get order %s: %w", id, err)
	}
	return o, nil
}

// lockOrder reads one order and locks its row until tx ends, so that events
// of one order handled concurrently apply one after the other.
func lockOrder(ctx context.Context, tx pgx.Tx, id string) (Order, error) {
	o, err := scanOrder(tx.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders WHERE order_id = $1 FOR UPDATE`, id))
	if err != nil {
		return Order{}, fmt.Errorf("lock order %s: %w", id, err)
	}
	return o, nil
}

// lockOrders reads the given orders and locks their rows, in order id
// order, until tx ends. Orders that do not exist are missing from the map.
// lockAll locks the rows of the orders ids name, in order id order, and
// reads nothing back.
func lockAll(ctx context.Context, tx pgx.Tx, ids []string) error {
	if _, err := tx.Exec(ctx, `SELECT 1 FROM orders WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE`, ids); err != nil {
		return fmt.Errorf("lock %d orders: %w", len(ids), err)
	}
	return nil
}

func lockOrders(ctx context.Context, tx pgx.Tx, ids []string) (map[string]Order, error) {
	rows, err := tx.Query(ctx, `SELECT `+orderColumns+` FROM orders WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE`, ids)
	if err != nil {
		return nil, fmt.Errorf("lock %d orders: %w", len(ids), err)
	}
	defer rows.Close()
	orders := make(map[string]Order, len(ids))
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, fmt.Errorf("lock %d orders: %w", len(ids), err)
		}
		orders[o.ID] = o
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lock %d orders: %w", len(ids), err)
	}
	return orders, nil
}

// updateOrders writes the state of each order if its row is still at the
// version prev gives, in one statement.
func updateOrders(ctx context.Context, tx execer, prev map[string]int, orders []Order) error {
	n := len(orders)
	ids, statuses, reasons := make([]string, n), make([]string, n), make([]string, n)
	prevs, versions := make([]int32, n), make([]int32, n)
	failed := make([]bool, n)
	updated := make([]time.Time, n)
	for i, o := range orders {
		ids[i], statuses[i], reasons[i] = o.ID, string(o.Status), o.Reason
		prevs[i], versions[i], failed[i], updated[i] = int32(prev[o.ID]), int32(o.Version), o.PaymentFailed, o.UpdatedAt
	}
	tag, err := tx.Exec(ctx, `
		UPDATE orders o
		SET status = u.status, reason = u.reason, payment_failed = u.failed, version = u.version, updated_at = u.updated
		FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::bool[], $6::int[], $7::timestamptz[])
			AS u(id, prev, status, reason, failed, version, updated)
		WHERE o.order_id = u.id AND o.version = u.prev`,
		ids, prevs, statuses, reasons, failed, versions, updated)
	if err != nil {
		return fmt.Errorf("update %d orders: %w", n, err)
	}
	if tag.RowsAffected() != int64(n) {
		return fmt.Errorf("update %d orders: %d at their version: %w", n, tag.RowsAffected(), errVersionConflict)
	}
	return nil
}

// updateOrder writes the state of o if the row is still at version prev.
func updateOrder(ctx context.Context, tx execer, prev int, o Order) error {
	tag, err := tx.Exec(ctx, `
		UPDATE orders
		SET status = $3, reason = $4, payment_failed = $5, version = $6, updated_at = $7
		WHERE order_id = $1 AND version = $2`,
		o.ID, prev, string(o.Status), o.Reason, o.PaymentFailed, o.Version, o.UpdatedAt)
	if err != nil {
		return fmt.Errorf("update order %s: %w", o.ID, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("update order %s from version %d: %w", o.ID, prev, errVersionConflict)
	}
	return nil
}

// nullTime is t for a timestamptz column, NULL for the zero time.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
