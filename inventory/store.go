package inventory

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsaga/jetsaga/internal/pg"
)

// The store: every SQL statement of the inventory service. Functions take a
// db, which is the handler's transaction or the pool; all names are
// unqualified because search_path is the service schema.

// db is what the store needs of a pgx.Tx or a *pgxpool.Pool.
type db interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// errNotFound is returned when a SKU has no stock row.
var errNotFound = errors.New("not found")

// insertReservation records the order's reservation decision as HELD. It
// returns false when the order already has one (any status): the business
// key, one decision per order.
func insertReservation(ctx context.Context, q db, orderID string) (bool, error) {
	tag, err := q.Exec(ctx, `
		INSERT INTO reservations (order_id, status) VALUES ($1, $2)
		ON CONFLICT (order_id) DO NOTHING`, orderID, string(Held))
	if err != nil {
		return false, fmt.Errorf("insert reservation %s: %w", orderID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// holdLines moves each line's quantity of its SKU from available to
// reserved if every line's SKU exists and has that much available; otherwise
// it changes nothing and returns false. Lines name distinct SKUs. It locks
// the rows in SKU order, then checks and moves in one statement whose
// snapshot is taken after the locks: both statements go in one round trip.
func holdLines(ctx context.Context, tx pgx.Tx, lines []Line) (bool, error) {
	skus, qtys := lineArrays(lines)
	b := &pgx.Batch{}
	b.Queue(`SELECT 1 FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE`, skus)
	b.Queue(`
		UPDATE stock s
		SET available = s.available - w.qty, reserved = s.reserved + w.qty, updated_at = now()
		FROM unnest($1::text[], $2::int[]) AS w(sku, qty)
		WHERE s.sku = w.sku
		  AND (SELECT count(*) FROM unnest($1::text[], $2::int[]) AS v(sku, qty)
		       JOIN stock t ON t.sku = v.sku AND t.available >= v.qty) = cardinality($1::text[])`,
		skus, qtys)
	tags, err := pg.ExecBatch(ctx, tx, b)
	if err != nil {
		return false, fmt.Errorf("hold %d lines: %w", len(lines), err)
	}
	switch n := tags[1].RowsAffected(); {
	case n == int64(len(lines)):
		return true, nil
	case n == 0:
		return false, nil
	default:
		return false, fmt.Errorf("hold %d lines: %d held (duplicate SKUs?)", len(lines), n)
	}
}

// firstShort returns the first line (in the given order) that cannot be
// held, and whether its SKU exists at all.
func firstShort(ctx context.Context, q db, lines []Line) (sku string, known bool, err error) {
	skus, qtys := lineArrays(lines)
	err = q.QueryRow(ctx, `
		SELECT w.sku, s.sku IS NOT NULL
		FROM unnest($1::text[], $2::int[]) WITH ORDINALITY AS w(sku, qty, n)
		LEFT JOIN stock s ON s.sku = w.sku
		WHERE s.sku IS NULL OR s.available < w.qty
		ORDER BY w.n
		LIMIT 1`, skus, qtys).Scan(&sku, &known)
	if err != nil {
		return "", false, fmt.Errorf("find the short line of %d: %w", len(lines), err)
	}
	return sku, known, nil
}

func lineArrays(lines []Line) ([]string, []int32) {
	skus := make([]string, len(lines))
	qtys := make([]int32, len(lines))
	for i, l := range lines {
		skus[i], qtys[i] = l.SKU, int32(l.Qty)
	}
	return skus, qtys
}

// lockStock locks, in SKU order, the stock rows of skus and of the SKUs the
// given orders' reservations hold.
func lockStock(ctx context.Context, q db, skus, orders []string) error {
	// A union of two index lookups, not one OR: with the OR the planner
	// scans reservation_items whole.
	_, err := q.Exec(ctx, `
		SELECT 1 FROM stock
		WHERE sku IN (SELECT unnest($1::text[])
		              UNION
		              SELECT sku FROM reservation_items WHERE order_id = ANY($2))
		ORDER BY sku
		FOR UPDATE OF stock`, skus, orders)
	if err != nil {
		return fmt.Errorf("lock stock: %w", err)
	}
	return nil
}

// skuKnown reports whether sku has a stock row.
func skuKnown(ctx context.Context, q db, sku string) (bool, error) {
	var known bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stock WHERE sku = $1)`, sku).Scan(&known); err != nil {
		return false, fmt.Errorf("look up sku %s: %w", sku, err)
	}
	return known, nil
}

// rejectReservation turns the order's just inserted HELD reservation into a
// REJECTED one with reason.
func rejectReservation(ctx context.Context, q db, orderID, reason string) error {
	tag, err := q.Exec(ctx, `
		UPDATE reservations SET status = $2, reason = $3, updated_at = now()
		WHERE order_id = $1 AND status = $4`, orderID, string(Rejected), reason, string(Held))
	if err != nil {
		return fmt.Errorf("reject reservation %s: %w", orderID, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("reject reservation %s: not HELD in this transaction", orderID)
	}
	return nil
}

// insertLines records what the reservation holds.
func insertLines(ctx context.Context, q db, orderID string, lines []Line) error {
	skus, qtys := lineArrays(lines)
	_, err := q.Exec(ctx, `
		INSERT INTO reservation_items (order_id, sku, qty)
		SELECT $1, sku, qty FROM unnest($2::text[], $3::int[]) AS t(sku, qty)`, orderID, skus, qtys)
	if err != nil {
		return fmt.Errorf("insert reservation items of %s: %w", orderID, err)
	}
	return nil
}

// leaveHeld moves the order's reservation from HELD to status to. It returns
// false, changing nothing, when the order has no HELD reservation: released,
// committed, rejected or unknown.
func leaveHeld(ctx context.Context, q db, orderID string, to Status) (bool, error) {
	tag, err := q.Exec(ctx, `
		UPDATE reservations SET status = $2, updated_at = now()
		WHERE order_id = $1 AND status = $3`, orderID, string(to), string(Held))
	if err != nil {
		return false, fmt.Errorf("move reservation %s to %s: %w", orderID, to, err)
	}
	return tag.RowsAffected() == 1, nil
}

// reservationLines returns what the order's reservation holds, sorted by SKU.
func reservationLines(ctx context.Context, q db, orderID string) ([]Line, error) {
	rows, err := q.Query(ctx, `
		SELECT sku, qty FROM reservation_items WHERE order_id = $1 ORDER BY sku`, orderID)
	if err != nil {
		return nil, fmt.Errorf("read reservation items of %s: %w", orderID, err)
	}
	lines, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Line, error) {
		var l Line
		err := r.Scan(&l.SKU, &l.Qty)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("read reservation items of %s: %w", orderID, err)
	}
	return lines, nil
}

// moveStock applies a transition's stock move for one line: Release gives
// the held quantity back to available, Commit moves it from reserved to sold.
func moveStock(ctx context.Context, q db, t Transition, l Line) error {
	var sql string
	switch t {
	case Release:
		sql = `UPDATE stock SET available = available + $2, reserved = reserved - $2, updated_at = now() WHERE sku = $1`
	case Commit:
		sql = `UPDATE stock SET reserved = reserved - $2, sold = sold + $2, updated_at = now() WHERE sku = $1`
	default:
		return fmt.Errorf("move stock of %s: transition %d moves no stock", l.SKU, t)
	}
	tag, err := q.Exec(ctx, sql, l.SKU, l.Qty)
	if err != nil {
		return fmt.Errorf("move %d of %s: %w", l.Qty, l.SKU, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("move %d of %s: %w", l.Qty, l.SKU, errNotFound)
	}
	return nil
}

// seedStock gives every SKU of seed that has no stock row yet its seeded
// quantity; SKUs that have one keep it. It returns the SKUs it created.
func seedStock(ctx context.Context, q db, seed map[string]int) ([]string, error) {
	if len(seed) == 0 {
		return nil, nil
	}
	skus := make([]string, 0, len(seed))
	for sku := range seed {
		skus = append(skus, sku)
	}
	slices.Sort(skus)
	qtys := make([]int32, len(skus))
	for i, sku := range skus {
		qtys[i] = int32(seed[sku])
	}
	rows, err := q.Query(ctx, `
		INSERT INTO stock (sku, available, initial)
		SELECT sku, qty, qty FROM unnest($1::text[], $2::int[]) AS t(sku, qty)
		ORDER BY sku
		ON CONFLICT (sku) DO NOTHING
		RETURNING sku`, skus, qtys)
	if err != nil {
		return nil, fmt.Errorf("seed stock: %w", err)
	}
	created, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("seed stock: %w", err)
	}
	slices.Sort(created)
	return created, nil
}

const stockColumns = `sku, available, reserved, sold, initial, adjusted`

func scanStock(r pgx.CollectableRow) (Stock, error) {
	var s Stock
	err := r.Scan(&s.SKU, &s.Available, &s.Reserved, &s.Sold, &s.Initial, &s.Adjusted)
	return s, err
}

// listStock returns every SKU's stock, sorted by SKU.
func listStock(ctx context.Context, q db) ([]Stock, error) {
	rows, err := q.Query(ctx, `SELECT `+stockColumns+` FROM stock ORDER BY sku`)
	if err != nil {
		return nil, fmt.Errorf("list stock: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanStock)
	if err != nil {
		return nil, fmt.Errorf("list stock: %w", err)
	}
	return list, nil
}

// getStock returns one SKU's stock, or errNotFound.
func getStock(ctx context.Context, q db, sku string) (Stock, error) {
	rows, err := q.Query(ctx, `SELECT `+stockColumns+` FROM stock WHERE sku = $1`, sku)
	if err != nil {
		return Stock{}, fmt.Errorf("get stock %s: %w", sku, err)
	}
	s, err := pgx.CollectExactlyOneRow(rows, scanStock)
	if errors.Is(err, pgx.ErrNoRows) {
		return Stock{}, fmt.Errorf("stock %s: %w", sku, errNotFound)
	}
	if err != nil {
		return Stock{}, fmt.Errorf("get stock %s: %w", sku, err)
	}
	return s, nil
}

// setAvailable serves PUT /stock/{sku}: a SKU without stock is created with
// n as its initial stock; an existing one is adjusted — available becomes n,
// adjusted moves by the difference, and the adjustment is recorded in
// stock_adjustments — in one transaction. adjusted reports which it was.
func setAvailable(ctx context.Context, pool *pgxpool.Pool, sku string, n int) (s Stock, adjusted bool, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			INSERT INTO stock (sku, available, initial) VALUES ($1, $2, $2)
			ON CONFLICT (sku) DO NOTHING
			RETURNING `+stockColumns, sku, n)
		if err != nil {
			return err
		}
		created, err := pgx.CollectRows(rows, scanStock)
		if err != nil {
			return err
		}
		if len(created) == 1 {
			s = created[0]
			return nil
		}
		var before int
		if err := tx.QueryRow(ctx, `SELECT available FROM stock WHERE sku = $1 FOR UPDATE`, sku).Scan(&before); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `
			UPDATE stock SET available = $2, adjusted = adjusted + ($2 - available), updated_at = now()
			WHERE sku = $1
			RETURNING `+stockColumns, sku, n)
		if err != nil {
			return err
		}
		if s, err = pgx.CollectExactlyOneRow(rows, scanStock); err != nil {
			return err
		}
		adjusted = true
		_, err = tx.Exec(ctx, `
			INSERT INTO stock_adjustments (sku, delta, available_before, available_after)
			VALUES ($1, $2, $3, $4)`, sku, n-before, before, n)
		return err
	})
	if err != nil {
		return Stock{}, false, fmt.Errorf("set stock %s: %w", sku, err)
	}
	return s, adjusted, nil
}
