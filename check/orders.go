package check

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The per-order pass: invariants 1, 5, the reservations' half of 2 and 3
// compare what different services hold about one order, and each service
// may keep its tables in a database of its own. So no query joins them:
// each service's table is read once, in one query, sorted by order id, and
// the four sorted streams are merged in Go, one order at a time (a merge
// join). Memory stays constant whatever the history (an order's rows, and
// the first maxListed violations); the cost is one sorted scan per table.
//
// The sort is byte order (COLLATE "C"), whatever the databases' collations,
// because that is how Go compares the ids: each database must hand its rows
// in the order the merge expects, and the cursors check it.

// ordersSQL: every order, with its age by the order database's clock, and
// whether it is older than the deadline ($1, in microseconds).
const ordersSQL = `
SELECT order_id, status, reason, total_cents, customer_id, created_at,
       (extract(epoch FROM now() - created_at) * 1000)::bigint,
       created_at <= now() - $1::bigint * interval '1 microsecond'
FROM orders.orders
ORDER BY order_id COLLATE "C"`

const viewsSQL = `
SELECT order_id, status, reason, total_cents, customer_id
FROM readmodel.order_views
ORDER BY order_id COLLATE "C"`

const reservationRowsSQL = `
SELECT order_id, status
FROM inventory.reservations
ORDER BY order_id COLLATE "C"`

const paymentRowsSQL = `
SELECT order_id, payment_id, status, amount_cents
FROM payment.payments
ORDER BY order_id COLLATE "C", payment_id COLLATE "C"`

// orderRow is an order as the order service holds it.
type orderRow struct {
	id, status, reason, customer string
	total                        int64
	createdAt                    time.Time
	ageMillis                    int64
	old                          bool // created longer ago than Options.Deadline
}

// viewRow is an order as the read model holds it.
type viewRow struct {
	id, status, reason, customer string
	total                        int64
}

// paymentRow is one payment of an order.
type paymentRow struct {
	orderID, paymentID, status string
	amount                     int64
}

// sagaRows is what each service holds about one order: a has* false (or
// an empty reservation, no payments) where a service has nothing.
type sagaRows struct {
	id          string
	order       orderRow
	hasOrder    bool
	view        viewRow
	hasView     bool
	reservation string // its status
	payments    []paymentRow
}

// cursor reads one table's rows in order id order, one at a time, into
// dest; id points at dest's order id.
type cursor struct {
	table  string // schema.table, for errors
	tx     pgx.Tx
	rows   pgx.Rows
	dest   []any
	id     *string
	unique bool // one row per order id at most
	ok     bool // dest holds a row
	prev   string
}

// begin starts the cursor's read-only REPEATABLE READ transaction on pool
// and takes its snapshot (a transaction's first statement does), so that
// the order of the begins is the order of the four snapshots.
func (c *cursor) begin(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("read %s: begin: %w", c.table, err)
	}
	c.tx = tx
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		return fmt.Errorf("read %s: take a snapshot: %w", c.table, err)
	}
	return nil
}

// query runs the cursor's query in its transaction and reads the first row
// (once the database has sorted them all).
func (c *cursor) query(ctx context.Context, sql string, args ...any) error {
	rows, err := c.tx.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("query %s: %w", c.table, err)
	}
	c.rows = rows
	return c.next()
}

// next moves to the next row; ok is false past the last.
func (c *cursor) next() error {
	if !c.rows.Next() {
		c.ok = false
		if err := c.rows.Err(); err != nil {
			return fmt.Errorf("read %s: %w", c.table, err)
		}
		return nil
	}
	if err := c.rows.Scan(c.dest...); err != nil {
		return fmt.Errorf("read %s: %w", c.table, err)
	}
	if c.ok && (*c.id < c.prev || c.unique && *c.id == c.prev) {
		return fmt.Errorf("read %s: order id %q after %q: not in byte order", c.table, *c.id, c.prev)
	}
	c.ok, c.prev = true, *c.id
	return nil
}

// close ends the query and the transaction.
func (c *cursor) close(ctx context.Context) {
	if c.rows != nil {
		c.rows.Close()
	}
	if c.tx != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = c.tx.Rollback(ctx) // read only: nothing to keep; a broken connection is the pool's to drop
	}
}

// perOrder checks, for every order id any service holds, invariant 1
// (terminal), the reservations' half of invariant 2 (reservations),
// invariant 3 (charges; payments of unknown orders in orphans) and
// invariant 5 (readModel), and fills Report.InFlight. Each service's rows
// come from its own database.
//
// The four reads are four snapshots, not one: the read model's,
// inventory's and payment's are taken first and the orders' last, so that
// every row the first three hold belongs to an order the last one sees
// (each is made from events that follow the order's commit), and a
// reservation COMMITTED (after order.confirmed) is seen with its order
// CONFIRMED. What can still disagree for a moment is an order that moved on
// between the snapshots, as one in flight disagrees anyway: orders younger
// than Options.Deadline are left out of the comparisons a saga in flight
// fails (invariants 1 and 5, a CONFIRMED order's reservation and payment,
// a CANCELLED order's reservation and charge). With Deadline 0, after
// quiescence, every order is compared.
func (c *checker) perOrder(ctx context.Context, terminal, reservations, charges, orphans, readModel *Result) error {
	var (
		o      orderRow
		v      viewRow
		resID  string
		resSt  string
		p      paymentRow
		orders = &cursor{table: "orders.orders", unique: true, id: &o.id,
			dest: []any{&o.id, &o.status, &o.reason, &o.total, &o.customer, &o.createdAt, &o.ageMillis, &o.old}}
		views = &cursor{table: "readmodel.order_views", unique: true, id: &v.id,
			dest: []any{&v.id, &v.status, &v.reason, &v.total, &v.customer}}
		reserved = &cursor{table: "inventory.reservations", unique: true, id: &resID, dest: []any{&resID, &resSt}}
		payments = &cursor{table: "payment.payments", id: &p.orderID, dest: []any{&p.orderID, &p.paymentID, &p.status, &p.amount}}
	)
	// In this order: the orders last (above).
	opens := []struct {
		cur  *cursor
		pool *pgxpool.Pool
		sql  string
		args []any
	}{
		{views, c.dbs.ReadModel, viewsSQL, nil},
		{reserved, c.dbs.Inventory, reservationRowsSQL, nil},
		{payments, c.dbs.Payment, paymentRowsSQL, nil},
		{orders, c.dbs.Order, ordersSQL, []any{c.cutoff()}},
	}
	cursors := []*cursor{views, reserved, payments, orders}
	defer func() {
		for _, cur := range cursors {
			cur.close(ctx)
		}
	}()
	for _, op := range opens {
		if err := op.cur.begin(ctx, op.pool); err != nil {
			return err
		}
	}
	// The four sorts at once (each database sorts its table before the
	// first row comes).
	errs := make([]error, len(opens))
	var wg sync.WaitGroup
	for i, op := range opens {
		wg.Go(func() { errs[i] = op.cur.query(ctx, op.sql, op.args...) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	rules := orderRules{c: c, terminal: terminal, reservations: reservations, charges: charges, orphans: orphans, readModel: readModel}
	var s sagaRows
	for {
		// The smallest order id any cursor is on.
		key, found := "", false
		for _, cur := range cursors {
			if cur.ok && (!found || *cur.id < key) {
				key, found = *cur.id, true
			}
		}
		if !found {
			break
		}
		s = sagaRows{id: key, payments: s.payments[:0]}
		if orders.ok && o.id == key {
			s.order, s.hasOrder = o, true
			if err := orders.next(); err != nil {
				return err
			}
		}
		if views.ok && v.id == key {
			s.view, s.hasView = v, true
			if err := views.next(); err != nil {
				return err
			}
		}
		if reserved.ok && resID == key {
			s.reservation = resSt
			if err := reserved.next(); err != nil {
				return err
			}
		}
		for payments.ok && p.orderID == key {
			s.payments = append(s.payments, p)
			if err := payments.next(); err != nil {
				return err
			}
		}
		rules.check(&s)
	}
	terminal.Violations = rules.stuck.lines()
	c.rep.InFlight, c.rep.InFlightCount = rules.inFlight.lines(), rules.inFlight.n
	return nil
}

// orderRules are the per-order comparisons of perOrder, each adding to its
// invariant's result.
type orderRules struct {
	c                                                   *checker
	terminal, reservations, charges, orphans, readModel *Result
	stuck, inFlight                                     oldest // invariant 1's violations and the orders in flight, oldest first
	differs                                             []string
}

func (ru *orderRules) check(s *sagaRows) {
	ru.checkTerminal(s)
	ru.checkReservation(s)
	ru.checkCharges(s)
	ru.checkReadModel(s)
}

// checkTerminal: invariant 1 for an order older than the deadline; a
// younger one not ended is listed as in flight.
func (ru *orderRules) checkTerminal(s *sagaRows) {
	o := s.order
	if !s.hasOrder || terminalStatus(o.status) && s.hasView && terminalStatus(s.view.status) {
		return
	}
	if !o.old {
		if ru.c.opt.Deadline > 0 {
			age := (time.Duration(o.ageMillis) * time.Millisecond).Round(100 * time.Millisecond)
			viewStatus := ""
			if s.hasView {
				viewStatus = s.view.status
			}
			ru.inFlight.add(o.createdAt, o.id, fmt.Sprintf("order %s: %s in the order service, %s in the read model (created %v ago)",
				o.id, o.status, cmpOr(viewStatus, "no view"), age))
		}
		return
	}
	var what []string
	if !terminalStatus(o.status) {
		what = append(what, o.status+" in the order service")
	}
	switch {
	case !s.hasView:
		what = append(what, "no read-model view")
	case !terminalStatus(s.view.status):
		what = append(what, cmpOr(s.view.status, "no status")+" in the read model")
	}
	age := (time.Duration(o.ageMillis) * time.Millisecond).Round(time.Second)
	ru.terminal.Count++
	ru.stuck.add(o.createdAt, o.id, fmt.Sprintf("order %s: %s (created %v ago)", o.id, strings.Join(what, ", "), age))
}

// holds reports a reservation that holds or has taken stock.
func holds(status string) bool { return status == "HELD" || status == "COMMITTED" }

// checkReservation: the half of invariant 2 that compares inventory's
// reservation with the order's outcome.
func (ru *orderRules) checkReservation(s *sagaRows) {
	o, r := s.order, s.reservation
	violated := (!s.hasOrder && holds(r)) ||
		(s.hasOrder && r == "COMMITTED" && o.status != "CONFIRMED") ||
		(s.hasOrder && o.old && o.status == "CANCELLED" && holds(r)) ||
		(s.hasOrder && o.old && o.status == "CONFIRMED" && r != "COMMITTED")
	if !violated {
		return
	}
	switch {
	case !s.hasOrder:
		ru.reservations.add("order %s: reservation %s for an order the order service does not have", s.id, r)
	case o.status == "CONFIRMED" && r == "":
		ru.reservations.add("order %s: CONFIRMED but has no reservation", s.id)
	case o.status == "CONFIRMED":
		ru.reservations.add("order %s: CONFIRMED but its reservation is %s, not COMMITTED", s.id, r)
	case o.status == "CANCELLED":
		ru.reservations.add("order %s: CANCELLED but its reservation is still %s", s.id, r)
	default:
		ru.reservations.add("order %s: reservation COMMITTED but the order is %s", s.id, o.status)
	}
}

// checkCharges: invariant 3. A CONFIRMED order has exactly one COMPLETED
// payment, of its total; a CANCELLED order has none left (REFUNDED and
// CANCELLED payments charge nothing); every payment belongs to an order.
func (ru *orderRules) checkCharges(s *sagaRows) {
	if !s.hasOrder {
		for _, p := range s.payments {
			ru.orphans.add("order %s: payment %s (%s, %d cents) for an order the order service does not have", s.id, p.paymentID, p.status, p.amount)
		}
		return
	}
	o := s.order
	var (
		completed int
		charged   int64
		ids       []string
	)
	for _, p := range s.payments {
		if p.status == "COMPLETED" {
			completed++
			charged += p.amount
			ids = append(ids, p.paymentID)
		}
	}
	slices.Sort(ids)
	paymentIDs := strings.Join(ids, ", ")
	switch {
	case !o.old:
	case o.status == "CANCELLED" && completed > 0:
		ru.charges.add("order %s: CANCELLED but charged %d cents (payment %s)", o.id, charged, paymentIDs)
	case o.status != "CONFIRMED" || completed == 1 && charged == o.total:
	case completed == 0:
		ru.charges.add("order %s: CONFIRMED without a completed payment (total %d cents)", o.id, o.total)
	case completed > 1:
		ru.charges.add("order %s: CONFIRMED with %d completed payments (%s), charged %d cents for a total of %d", o.id, completed, paymentIDs, charged, o.total)
	default:
		ru.charges.add("order %s: CONFIRMED with a total of %d cents, but payment %s charged %d cents", o.id, o.total, paymentIDs, charged)
	}
}

// checkReadModel: invariant 5. The read model's view of every order older
// than the deadline agrees with the order service's row, and it has no
// view of an unknown order.
func (ru *orderRules) checkReadModel(s *sagaRows) {
	o, v := s.order, s.view
	switch {
	case !s.hasOrder && s.hasView:
		ru.readModel.add("order %s: read-model view (%s) of an order the order service does not have", s.id, v.status)
	case !s.hasOrder || !o.old:
	case !s.hasView:
		ru.readModel.add("order %s: no read-model view (%s in the order service)", s.id, o.status)
	default:
		ru.differs = ru.differs[:0]
		field := func(name, o, v string) {
			if o != v {
				ru.differs = append(ru.differs, fmt.Sprintf("%s %s in the order service, %s in the read model", name, o, v))
			}
		}
		quote := func(s string) string { return fmt.Sprintf("%q", s) }
		field("status", o.status, v.status)
		field("reason", quote(o.reason), quote(v.reason))
		field("total_cents", fmt.Sprint(o.total), fmt.Sprint(v.total))
		field("customer_id", quote(o.customer), quote(v.customer))
		if len(ru.differs) > 0 {
			ru.readModel.add("order %s: %s", s.id, strings.Join(ru.differs, "; "))
		}
	}
}

// oldest keeps the maxListed earliest of many lines by (created at, order
// id), the order invariant 1 and the in-flight list name orders in, and
// counts them all.
type oldest struct {
	n     int
	items []datedLine
}

type datedLine struct {
	at       time.Time
	id, line string
}

func (l *oldest) add(at time.Time, id, line string) {
	l.n++
	d := datedLine{at: at, id: id, line: line}
	i, _ := slices.BinarySearchFunc(l.items, d, func(a, b datedLine) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	if i >= maxListed {
		return
	}
	l.items = slices.Insert(l.items, i, d)
	if len(l.items) > maxListed {
		l.items = l.items[:maxListed]
	}
}

func (l *oldest) lines() []string {
	var out []string
	for _, d := range l.items {
		out = append(out, d.line)
	}
	return out
}
