package check

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The SQL of invariants 1, 2, 3 and 5: each query returns the violations
// only, so that a consistent system of any size costs one pass over its
// tables and no rows. $1, where present, is Options.Deadline in microseconds,
// compared with the database's clock.

const terminalSQL = `
SELECT o.order_id, o.status, v.order_id IS NOT NULL, coalesce(v.status, ''),
       (extract(epoch FROM now() - o.created_at) * 1000)::bigint
FROM orders.orders o
LEFT JOIN readmodel.order_views v ON v.order_id = o.order_id
WHERE o.created_at <= now() - $1::bigint * interval '1 microsecond'
  AND (o.status NOT IN ('CONFIRMED', 'CANCELLED')
       OR v.order_id IS NULL
       OR v.status IS NULL
       OR v.status NOT IN ('CONFIRMED', 'CANCELLED'))
ORDER BY o.created_at, o.order_id`

// terminal checks invariant 1: every order older than the deadline is
// CONFIRMED or CANCELLED in the order service and in the read model.
func (c *checker) terminal(ctx context.Context, r *Result) error {
	rows, err := c.pool.Query(ctx, terminalSQL, c.cutoff())
	if err != nil {
		return fmt.Errorf("query orders and views: %w", err)
	}
	var (
		orderID, status, viewStatus string
		hasView                     bool
		ageMillis                   int64
	)
	_, err = pgx.ForEachRow(rows, []any{&orderID, &status, &hasView, &viewStatus, &ageMillis}, func() error {
		var what []string
		if !terminalStatus(status) {
			what = append(what, status+" in the order service")
		}
		switch {
		case !hasView:
			what = append(what, "no read-model view")
		case !terminalStatus(viewStatus):
			what = append(what, cmpOr(viewStatus, "no status")+" in the read model")
		}
		age := (time.Duration(ageMillis) * time.Millisecond).Round(time.Second)
		r.add("order %s: %s (created %v ago)", orderID, strings.Join(what, ", "), age)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read orders and views: %w", err)
	}
	return nil
}

// inFlightSQL: the orders younger than the deadline that have not ended, in
// the order service or in the read model.
const inFlightSQL = `
SELECT o.order_id, o.status, coalesce(v.status, ''),
       (extract(epoch FROM now() - o.created_at) * 1000)::bigint
FROM orders.orders o
LEFT JOIN readmodel.order_views v ON v.order_id = o.order_id
WHERE o.created_at > now() - $1::bigint * interval '1 microsecond'
  AND (o.status NOT IN ('CONFIRMED', 'CANCELLED')
       OR v.status IS NULL
       OR v.status NOT IN ('CONFIRMED', 'CANCELLED'))
ORDER BY o.created_at, o.order_id`

// inFlight fills Report.InFlight: the orders invariant 1 leaves out because
// they are younger than the deadline and may still be on their way.
func (c *checker) inFlight(ctx context.Context) error {
	if c.opt.Deadline <= 0 {
		return nil
	}
	rows, err := c.pool.Query(ctx, inFlightSQL, c.cutoff())
	if err != nil {
		return fmt.Errorf("query orders in flight: %w", err)
	}
	var (
		orderID, status, viewStatus string
		ageMillis                   int64
	)
	_, err = pgx.ForEachRow(rows, []any{&orderID, &status, &viewStatus, &ageMillis}, func() error {
		c.rep.InFlightCount++
		if len(c.rep.InFlight) < maxListed {
			age := (time.Duration(ageMillis) * time.Millisecond).Round(100 * time.Millisecond)
			c.rep.InFlight = append(c.rep.InFlight, fmt.Sprintf("order %s: %s in the order service, %s in the read model (created %v ago)",
				orderID, status, cmpOr(viewStatus, "no view"), age))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read orders in flight: %w", err)
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

const reservationsSQL = `
SELECT coalesce(r.order_id, o.order_id), coalesce(r.status, ''), coalesce(o.status, ''), o.order_id IS NOT NULL
FROM inventory.reservations r
FULL JOIN orders.orders o ON o.order_id = r.order_id
WHERE (r.status IN ('HELD', 'COMMITTED') AND o.order_id IS NULL)
   OR (r.status = 'COMMITTED' AND o.status <> 'CONFIRMED')
   OR (o.status = 'CANCELLED' AND r.status IN ('HELD', 'COMMITTED'))
   OR (o.status = 'CONFIRMED' AND r.status IS DISTINCT FROM 'COMMITTED'
       AND o.created_at <= now() - $1::bigint * interval '1 microsecond')
ORDER BY 1`

// stock checks invariant 2: per SKU, initial + adjusted (the net of the
// operators' recorded stock adjustments) = available + reserved + sold,
// reserved is what HELD reservations hold and sold what COMMITTED ones do;
// and reservations agree with the orders' outcomes.
func (c *checker) stock(ctx context.Context, r *Result) error {
	rows, err := c.pool.Query(ctx, stockSQL)
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

	rows, err = c.pool.Query(ctx, reservationsSQL, c.cutoff())
	if err != nil {
		return fmt.Errorf("query reservations and orders: %w", err)
	}
	var (
		orderID, resStatus, orderStatus string
		orderExists                     bool
	)
	_, err = pgx.ForEachRow(rows, []any{&orderID, &resStatus, &orderStatus, &orderExists}, func() error {
		switch {
		case !orderExists:
			r.add("order %s: reservation %s for an order the order service does not have", orderID, resStatus)
		case orderStatus == "CONFIRMED" && resStatus == "":
			r.add("order %s: CONFIRMED but has no reservation", orderID)
		case orderStatus == "CONFIRMED":
			r.add("order %s: CONFIRMED but its reservation is %s, not COMMITTED", orderID, resStatus)
		case orderStatus == "CANCELLED":
			r.add("order %s: CANCELLED but its reservation is still %s", orderID, resStatus)
		default:
			r.add("order %s: reservation COMMITTED but the order is %s", orderID, orderStatus)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read reservations and orders: %w", err)
	}
	return nil
}

const chargesSQL = `
SELECT o.order_id, o.status, o.total_cents,
       count(p.order_id) FILTER (WHERE p.status = 'COMPLETED'),
       coalesce(sum(p.amount_cents) FILTER (WHERE p.status = 'COMPLETED'), 0)::bigint,
       coalesce(string_agg(p.payment_id, ', ' ORDER BY p.payment_id) FILTER (WHERE p.status = 'COMPLETED'), '')
FROM orders.orders o
LEFT JOIN payment.payments p ON p.order_id = o.order_id
WHERE o.status IN ('CONFIRMED', 'CANCELLED')
GROUP BY o.order_id, o.status, o.total_cents
HAVING (o.status = 'CONFIRMED'
        AND (count(p.order_id) FILTER (WHERE p.status = 'COMPLETED') <> 1
             OR coalesce(sum(p.amount_cents) FILTER (WHERE p.status = 'COMPLETED'), 0) <> o.total_cents))
    OR (o.status = 'CANCELLED' AND count(p.order_id) FILTER (WHERE p.status = 'COMPLETED') > 0)
ORDER BY o.order_id`

const orphanPaymentsSQL = `
SELECT p.order_id, p.payment_id, p.status, p.amount_cents
FROM payment.payments p
WHERE NOT EXISTS (SELECT 1 FROM orders.orders o WHERE o.order_id = p.order_id)
ORDER BY p.order_id`

// payments checks invariant 3: a CONFIRMED order has exactly one COMPLETED
// payment, of its total; a CANCELLED order has none left (REFUNDED and
// CANCELLED payments charge nothing); every payment belongs
// to an order.
func (c *checker) payments(ctx context.Context, r *Result) error {
	rows, err := c.pool.Query(ctx, chargesSQL)
	if err != nil {
		return fmt.Errorf("query orders and payments: %w", err)
	}
	var (
		orderID, status, paymentIDs string
		total, completed, charged   int64
	)
	_, err = pgx.ForEachRow(rows, []any{&orderID, &status, &total, &completed, &charged, &paymentIDs}, func() error {
		switch {
		case status == "CANCELLED":
			r.add("order %s: CANCELLED but charged %d cents (payment %s)", orderID, charged, paymentIDs)
		case completed == 0:
			r.add("order %s: CONFIRMED without a completed payment (total %d cents)", orderID, total)
		case completed > 1:
			r.add("order %s: CONFIRMED with %d completed payments (%s), charged %d cents for a total of %d", orderID, completed, paymentIDs, charged, total)
		default:
			r.add("order %s: CONFIRMED with a total of %d cents, but payment %s charged %d cents", orderID, total, paymentIDs, charged)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read orders and payments: %w", err)
	}

	rows, err = c.pool.Query(ctx, orphanPaymentsSQL)
	if err != nil {
		return fmt.Errorf("query payments without an order: %w", err)
	}
	var paymentID string
	var amount int64
	_, err = pgx.ForEachRow(rows, []any{&orderID, &paymentID, &status, &amount}, func() error {
		r.add("order %s: payment %s (%s, %d cents) for an order the order service does not have", orderID, paymentID, status, amount)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read payments without an order: %w", err)
	}
	return nil
}

const readModelSQL = `
SELECT coalesce(o.order_id, v.order_id), o.order_id IS NOT NULL, v.order_id IS NOT NULL,
       coalesce(o.status, ''), coalesce(v.status, ''),
       coalesce(o.reason, ''), coalesce(v.reason, ''),
       coalesce(o.total_cents, 0)::bigint, coalesce(v.total_cents, 0)::bigint,
       coalesce(o.customer_id, ''), coalesce(v.customer_id, '')
FROM orders.orders o
FULL JOIN readmodel.order_views v ON v.order_id = o.order_id
WHERE o.order_id IS NULL
   OR (o.created_at <= now() - $1::bigint * interval '1 microsecond'
       AND (v.order_id IS NULL
            OR o.status IS DISTINCT FROM v.status
            OR coalesce(o.reason, '') <> coalesce(v.reason, '')
            OR o.total_cents IS DISTINCT FROM v.total_cents
            OR o.customer_id IS DISTINCT FROM v.customer_id))
ORDER BY 1`

// readModel checks invariant 5: the read model's view of every order agrees
// with the order service's row, and it has no view of an unknown order.
func (c *checker) readModel(ctx context.Context, r *Result) error {
	rows, err := c.pool.Query(ctx, readModelSQL, c.cutoff())
	if err != nil {
		return fmt.Errorf("query orders and views: %w", err)
	}
	var (
		orderID              string
		hasOrder, hasView    bool
		oStatus, vStatus     string
		oReason, vReason     string
		oTotal, vTotal       int64
		oCustomer, vCustomer string
		scans                = []any{&orderID, &hasOrder, &hasView, &oStatus, &vStatus, &oReason, &vReason, &oTotal, &vTotal, &oCustomer, &vCustomer}
		differs              []string
		quote                = func(s string) string { return fmt.Sprintf("%q", s) }
		field                = func(name, o, v string) {
			if o != v {
				differs = append(differs, fmt.Sprintf("%s %s in the order service, %s in the read model", name, o, v))
			}
		}
	)
	_, err = pgx.ForEachRow(rows, scans, func() error {
		switch {
		case !hasOrder:
			r.add("order %s: read-model view (%s) of an order the order service does not have", orderID, vStatus)
		case !hasView:
			r.add("order %s: no read-model view (%s in the order service)", orderID, oStatus)
		default:
			differs = differs[:0]
			field("status", oStatus, vStatus)
			field("reason", quote(oReason), quote(vReason))
			field("total_cents", fmt.Sprint(oTotal), fmt.Sprint(vTotal))
			field("customer_id", quote(oCustomer), quote(vCustomer))
			r.add("order %s: %s", orderID, strings.Join(differs, "; "))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read orders and views: %w", err)
	}
	return nil
}
