package inventory

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
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
