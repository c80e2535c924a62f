package check

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The SQL of the inventory's half of invariant 2: it returns the violations
// only, so that a consistent system of any size costs one pass over its
// tables and no rows.
const stockSQL = `
WITH items AS (
    SELECT ri.sku,
           coalesce(sum(ri.qty) FILTER (WHERE r.status = 'HELD'), 0)::bigint      AS held,
           coalesce(sum(ri.qty) FILTER (WHERE r.status = 'COMMITTED'), 0)::bigint AS committed
    FROM inventory.reservation_items ri
    JOIN inventory.reservations r ON r.order_id = ri.order_id
    GROUP BY ri.sku
)
SELECT coalesce(s.sku, i.sku), s.sku IS NOT NULL,
       coalesce(s.initial, 0)::bigint, coalesce(s.adjusted, 0)::bigint, coalesce(s.available, 0)::bigint,
       coalesce(s.reserved, 0)::bigint, coalesce(s.sold, 0)::bigint,
       coalesce(i.held, 0), coalesce(i.committed, 0)
FROM inventory.stock s
FULL JOIN items i ON i.sku = s.sku
WHERE (s.sku IS NULL AND (i.held > 0 OR i.committed > 0))
   OR s.initial + s.adjusted <> s.available + s.reserved + s.sold
   OR s.reserved <> coalesce(i.held, 0)
   OR s.sold <> coalesce(i.committed, 0)
ORDER BY 1`

// stock checks the inventory's half of invariant 2, in its own database:
// per SKU, initial + adjusted (the net of the operators' recorded stock
// adjustments) = available + reserved + sold, reserved is what HELD
// reservations hold and sold what COMMITTED ones do. That reservations
// agree with the orders' outcomes is perOrder's.
func (c *checker) stock(ctx context.Context, r *Result) error {
	rows, err := c.dbs.Inventory.Query(ctx, stockSQL)
	if err != nil {
		return fmt.Errorf("query stock: %w", err)
	}
	var (
		sku                                                      string
		hasStock                                                 bool
		initial, adjusted, available, reserved, sold, held, comm int64
	)
	_, err = pgx.ForEachRow(rows, []any{&sku, &hasStock, &initial, &adjusted, &available, &reserved, &sold, &held, &comm}, func() error {
		if !hasStock {
			r.add("sku %s: no stock row, yet reservations hold %d and committed %d", sku, held, comm)
			return nil
		}
		var what []string
		if sum := available + reserved + sold; initial+adjusted != sum {
			what = append(what, fmt.Sprintf("initial %d + adjusted %d != available %d + reserved %d + sold %d (= %d)", initial, adjusted, available, reserved, sold, sum))
		}
		if reserved != held {
			what = append(what, fmt.Sprintf("reserved %d != %d held by HELD reservations", reserved, held))
		}
		if sold != comm {
			what = append(what, fmt.Sprintf("sold %d != %d committed by COMMITTED reservations", sold, comm))
		}
		r.add("sku %s: %s", sku, strings.Join(what, "; "))
		return nil
	})
	if err != nil {
		return fmt.Errorf("read stock: %w", err)
	}
	return nil
}

func terminalStatus(s string) bool { return s == "CONFIRMED" || s == "CANCELLED" }

func cmpOr(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}
