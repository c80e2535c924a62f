package check_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// The per-order pass reads each service's table in its own order and
// merges them by order id: invariant 1 still lists the stuck orders oldest
// first (not in order id order), at most 20 of them, and counts them all.
func TestTerminalListsTheOldestFirst(t *testing.T) {
	t.Parallel()
	w := newWorldIn(t, databasePerService)
	const n = 25
	for i := range n {
		// Ids in the reverse order of their creation.
		id := fmt.Sprintf("o-stuck-%02d", n-i)
		w.exec(t, "orders", `INSERT INTO orders (order_id, customer_id, items, total_cents, status, created_at)
			VALUES ($1, 'c9', '[]', 0, 'PENDING', now() - interval '3 hours' + $2 * interval '1 minute')`, id, i)
		w.exec(t, "readmodel", `INSERT INTO order_views (order_id, customer_id, total_cents, status) VALUES ($1, 'c9', 0, 'PENDING')`, id)
	}
	rep := run(t, w, check.Options{Deadline: deadline})
	res := rep.Results[0]
	if got := rep.Failed(); !slices.Equal(got, []int{1}) || res.Count != n || len(res.Violations) != 20 {
		t.Fatalf("failed %v, invariant 1 counted %d and listed %d; want [1], %d, 20:\n%s", got, res.Count, len(res.Violations), n, written(rep))
	}
	for i, v := range res.Violations {
		if want := fmt.Sprintf("order o-stuck-%02d: PENDING in the order service, PENDING in the read model", n-i); !strings.HasPrefix(v, want) {
			t.Errorf("violation %d = %q, want it to start %q (oldest first)", i, v, want)
		}
	}
	if out := written(rep); !strings.Contains(out, "(25 violations)\n") || !strings.Contains(out, "\n    ... and 5 more\n") {
		t.Errorf("report:\n%s", written(rep))
	}
}

// A database whose collation sorts the order ids otherwise than bytes do
// (ICU puts "o_b" before "o-a", and "o-Z" after "o-b") is merged by the
// ids' bytes all the same: nothing is missed or misjoined.
func TestOrderIDsInAnyCollation(t *testing.T) {
	t.Parallel()
	w := newWorldIn(t, databasePerService)
	for _, schema := range []string{"orders", "readmodel"} {
		table := map[string]string{"orders": "orders", "readmodel": "order_views"}[schema]
		w.exec(t, schema, `ALTER TABLE `+table+` ALTER COLUMN order_id TYPE text COLLATE "und-x-icu"`)
	}
	ids := []string{"o-Z", "o-a", "o_b", "o-b", "oa"}
	for _, id := range ids {
		w.exec(t, "orders", `INSERT INTO orders (order_id, customer_id, items, total_cents, status, reason, created_at)
			VALUES ($1, 'c1', '[]', 0, 'CANCELLED', 'out_of_stock', now() - interval '2 hours')`, id)
		w.exec(t, "readmodel", `INSERT INTO order_views (order_id, customer_id, total_cents, status, reason)
			VALUES ($1, 'c1', 0, 'CANCELLED', 'out_of_stock')`, id)
	}
	// The read model sorts them otherwise than the merge does.
	var sorted []string
	rows, err := w.schema["readmodel"].Query(t.Context(), `SELECT order_id FROM order_views WHERE order_id = ANY($1) ORDER BY order_id`, ids)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		sorted = append(sorted, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if slices.IsSorted(sorted) {
		t.Fatalf("the ICU collation sorts %q in byte order: the test shows nothing", sorted)
	}

	if rep := run(t, w, check.Options{Deadline: deadline}); !rep.OK() {
		t.Fatalf("orders and views that agree fail the check:\n%s", written(rep))
	}
	w.exec(t, "readmodel", `UPDATE order_views SET customer_id = 'c2' WHERE order_id = 'o_b'`)
	rep := run(t, w, check.Options{Deadline: deadline})
	if got, res := rep.Failed(), rep.Results[4]; !slices.Equal(got, []int{5}) || res.Count != 1 ||
		!strings.Contains(res.Violations[0], `order o_b: customer_id "c1" in the order service, "c2" in the read model`) {
		t.Fatalf("failed %v, want [5] naming o_b alone:\n%s", got, written(rep))
	}
}

// A live check (a deadline) leaves young orders out of the comparisons that
// a saga in flight fails for a moment, and a check after quiescence
// (deadline 0) compares them too: a young CONFIRMED order with neither a
// committed reservation nor a payment.
func TestYoungOrdersLeftOut(t *testing.T) {
	t.Parallel()
	for _, l := range layouts {
		t.Run(string(l), func(t *testing.T) {
			t.Parallel()
			w := newWorldIn(t, l)
			w.exec(t, "orders", `INSERT INTO orders (order_id, customer_id, items, total_cents, status)
				VALUES ('o-just-confirmed', 'c5', '[]', 700, 'CONFIRMED')`)
			w.exec(t, "readmodel", `INSERT INTO order_views (order_id, customer_id, total_cents, status)
				VALUES ('o-just-confirmed', 'c5', 700, 'CONFIRMED')`)
			w.exec(t, "inventory", `INSERT INTO reservations (order_id, status) VALUES ('o-just-confirmed', 'HELD')`)
			if rep := run(t, w, check.Options{Deadline: deadline}); !rep.OK() {
				t.Fatalf("a young order fails a check with a deadline:\n%s", written(rep))
			}
			// o-young is RESERVED: with deadline 0 it fails invariant 1 too.
			rep := run(t, w, check.Options{})
			if got := rep.Failed(); !slices.Equal(got, []int{1, 2, 3}) {
				t.Fatalf("failed %v, want [1 2 3]:\n%s", got, written(rep))
			}
			for inv, want := range map[int]string{
				2: "order o-just-confirmed: CONFIRMED but its reservation is HELD, not COMMITTED",
				3: "order o-just-confirmed: CONFIRMED without a completed payment (total 700 cents)",
			} {
				if res := rep.Results[inv-1]; !slices.Contains(res.Violations, want) {
					t.Errorf("invariant %d: %q, want %q", inv, res.Violations, want)
				}
			}
		})
	}
}

// One pool for the four services must allow the four reads the per-order
// pass runs at once; a smaller one is an error that says so, not a hang.
func TestPoolTooSmall(t *testing.T) {
	t.Parallel()
	js := testenv.JetStream(t, testenv.StartNATS(t).Connect(t))
	small := testenv.PoolOn(t, testenv.DatabaseURL(t)+"&pool_max_conns=2", "public", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := check.Run(ctx, check.OneDB(small), js, check.Options{})
	if err == nil || !strings.Contains(err.Error(), "pool_max_conns") || ctx.Err() != nil {
		t.Fatalf("Run on a pool of 2 connections: %v, want an error naming pool_max_conns", err)
	}
}
