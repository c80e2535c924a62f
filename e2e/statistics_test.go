package e2e_test

import (
	"strings"
	"testing"
)

// The tables that grow with every saga sample 3,000 rows for ANALYZE rather
// than 30,000 (migrations *_small_statistics, 005_inbox_statistics): every
// column has a statistics target of its own, at most 10. A column added
// later without one would bring the 30,000-row sample back.
func TestGrowingTablesSampleSmall(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{})
	tables := []string{
		"orders.inbox", "orders.orders",
		"inventory.inbox", "inventory.reservations", "inventory.reservation_items",
		"payment.inbox", "payment.orders", "payment.payments",
		"readmodel.inbox", "readmodel.events", "readmodel.order_views",
	}
	for _, table := range tables {
		// attstattarget is -1 (Postgres 16 and older) or NULL (17 and
		// later) for a column on the default target.
		got := w.scalar(`
			SELECT count(*)::text || ' ' || coalesce(string_agg(attname, ',' ORDER BY attnum)
				FILTER (WHERE coalesce(attstattarget::int, -1) < 0 OR attstattarget > 10), '')
			FROM pg_attribute
			WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`, table)
		n, wide, _ := strings.Cut(got, " ")
		if n == "0" {
			t.Fatalf("%s: no columns", table)
		}
		if wide != "" {
			t.Errorf("%s: columns on a statistics target over 10 (or the default): %s", table, wide)
		}
	}
}
